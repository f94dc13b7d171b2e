"""The golden set (eval_data), through real pipeline runs: a fixed labelled set on which every
candidate and the serving model are scored besides the span's eval split. Its images are dropped
from training (reported), the push needs its blessing too, and the version records its figures."""

import json
import os
import shutil

import pytest

from components.contract import PROVENANCE_FILE
from components.serving import serving_dir
from tests.conftest import run_graft, small_training_config

PER_CLASS = 6  # golden images per class, copied out of the training folders


def _golden_from(data_dir: str, golden: str, relabel: dict | None = None) -> list:
    """Copies the first PER_CLASS images of each class folder of `data_dir` into `golden`, under the
    class `relabel` names for it (default: its own); returns the copied training paths."""
    copied = []
    for class_name in sorted(os.listdir(data_dir)):
        target = os.path.join(golden, (relabel or {}).get(class_name, class_name))
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(data_dir, class_name)))[:PER_CLASS]:
            shutil.copy(os.path.join(data_dir, class_name, name), os.path.join(target, name))
            copied.append(f"{class_name}/{name}")
    return copied


@pytest.mark.e2e
def test_a_golden_set_is_never_trained_on_and_its_blessing_gates_the_push(tmp_path, tiny_digits_dir):
    golden = str(tmp_path / "golden")
    copied = _golden_from(tiny_digits_dir, golden)
    # Judged on min_accuracy alone (no bound on the change vs the serving model), so that only the
    # golden set can refuse the second run's candidate.
    config = small_training_config(
        tmp_path,
        data_dir=tiny_digits_dir,
        eval_data=golden,
        min_accuracy=0.5,
        promote_when="point",
        max_accuracy_drop=1.0,
    )

    first, output = run_graft(tmp_path, config, "first")
    # Every golden image was also in the training folders: dropped from training, each reported.
    dropped = {s["path"]: s["reason"] for s in first["ingest"]["skipped_files"] if "golden set" in s["reason"]}
    assert sorted(dropped) == sorted(copied), dropped
    assert first["ingest"]["skipped"] == len(copied)
    assert all("never trained on" in reason for reason in dropped.values())
    # Scored on the golden set (every image of it), blessed there too, and pushed.
    assert first["golden"]["ingest"]["accepted"] == len(copied)
    assert first["golden"]["metrics"]["example_count"] == len(copied)
    assert first["golden"]["metrics"]["sparse_categorical_accuracy"] >= 0.5
    assert "sparse_categorical_accuracy" in first["golden"]["metric_intervals"]
    assert first["golden"]["blessed"] and first["pushed"], output
    assert "golden set (18 examples): accuracy" in output
    with open(os.path.join(first["pushed_model_dir"], PROVENANCE_FILE)) as f:
        recorded = json.load(f)["golden"]
    assert (
        recorded["metrics"]["sparse_categorical_accuracy"] == first["golden"]["metrics"]["sparse_categorical_accuracy"]
    )

    # The same images filed under the wrong classes: the candidate fails the golden set, so nothing
    # is pushed, though the eval split blesses it; the reason names the golden set.
    shutil.rmtree(golden)
    _golden_from(tiny_digits_dir, golden, relabel={"digit_0": "digit_1", "digit_1": "digit_7", "digit_7": "digit_0"})
    second, output = run_graft(tmp_path, {**config, "force_retrain": True}, "second")
    assert second["golden"]["metrics"]["sparse_categorical_accuracy"] < 0.5
    assert not second["golden"]["blessed"] and not second["blessed"]
    assert not second["pushed"]
    assert second["push_skipped_reason"].startswith("the golden set (eval_data) did not bless it:"), second
    reasons = second["not_blessed_because"]  # the eval split blessed it: every reason is the golden set's
    assert reasons and all(reason.startswith("golden set:") for reason in reasons), reasons
    assert len(serving_dir.versions(config["serving_dir"])) == 1  # still the first run's version
