"""Promotion on the confidence interval of the accuracy change (components/evaluator/promotion.py),
and the blessing the rule withdraws. The TFMA run that produces the interval: tests/test_pipeline_e2e.py."""

import json
import os

import pytest
from tfx.components.evaluator import constants
from tfx.types import standard_artifacts

from components.evaluator import promotion
from components.evaluator.executor import judge_promotion
from components.evaluator.settings import EvaluatorSettings

NOISE = {"value": 0.004, "lower": -0.012, "upper": 0.02}  # a retrain on the same data: no real change
BETTER = {"value": 0.03, "lower": 0.011, "upper": 0.049}
WORSE = {"value": -0.02, "lower": -0.034, "upper": -0.006}


@pytest.mark.parametrize(
    "rule, change, promoted",
    [
        ("better", NOISE, False),
        ("better", BETTER, True),
        ("better", WORSE, False),
        ("not_worse", NOISE, True),
        ("not_worse", WORSE, False),
        ("point", NOISE, True),  # TFMA's own point threshold decides under `point`
        ("point", None, True),
        ("better", None, False),  # no interval: refused by name, not waved through
    ],
)
def test_each_rule_on_the_interval(rule, change, promoted):
    verdict, reason = promotion.judge(rule, 0.0, change)
    assert verdict is promoted, reason
    if rule == "better" and change is NOISE:
        assert reason == (
            "accuracy change vs the model now serving +0.0040, 95 % interval [-0.0120, +0.0200]: the interval "
            "reaches -0.0120, so the candidate is not better beyond noise (promote_when: better)"
        )
    if change is None and rule != "point":
        assert "TFMA computed none" in reason and "promote_when: point" in reason


def test_not_worse_allows_the_configured_drop():
    assert promotion.judge("not_worse", 0.01, WORSE)[0] is True  # upper -0.006 is above -0.01
    assert promotion.judge("not_worse", 0.005, WORSE)[0] is False


def _outputs(tmp_path, blessed: bool):
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
    open(os.path.join(blessing.uri, name), "w").close()
    blessing.set_int_custom_property("blessed", int(blessed))
    return {"evaluation": [evaluation], "blessing": [blessing]}


def test_a_refusal_withdraws_tfmas_blessing_and_says_why(tmp_path, monkeypatch):
    from components.evaluator import executor

    monkeypatch.setattr(executor, "overall_intervals", lambda uri: {"sparse_categorical_accuracy_change": NOISE})
    outputs = _outputs(tmp_path, blessed=True)
    judge_promotion(EvaluatorSettings(promote_when="better", max_accuracy_drop=0.0), outputs)
    blessing = outputs["blessing"][0]
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.listdir(blessing.uri) == [constants.NOT_BLESSED_FILE_NAME]
    record = promotion.read(outputs["evaluation"][0].uri)
    assert record["promoted"] is False and record["accuracy_change"] == NOISE
    assert json.dumps(record)  # plain data, for the report and the summary


def test_the_rule_never_blesses_what_tfma_refused(tmp_path, monkeypatch):
    from components.evaluator import executor

    monkeypatch.setattr(executor, "overall_intervals", lambda uri: {"sparse_categorical_accuracy_change": BETTER})
    outputs = _outputs(tmp_path, blessed=False)
    judge_promotion(EvaluatorSettings(promote_when="better", max_accuracy_drop=0.0), outputs)
    assert outputs["blessing"][0].get_int_custom_property("blessed") == 0
    assert promotion.read(outputs["evaluation"][0].uri)["promoted"] is True  # the rule's own verdict, recorded
