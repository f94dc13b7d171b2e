"""The golden set (eval_data), through real pipeline runs: a fixed labelled set on which every
candidate and the serving model are scored besides the span's eval split. Its images are dropped
from training (reported), the push needs its blessing too, and the version records its figures."""

import os
import shutil

import pytest

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
def test_a_golden_set_is_never_trained_on_and_its_refusal_stops_the_push(tmp_path, tiny_digits_dir):
    """One run: the golden images filed under the wrong classes, so the candidate that the eval
    split blesses fails the golden set. (The golden set blessing and being recorded in the pushed
    version: the run-local test in test_kubeflow.py.)"""
    golden = str(tmp_path / "golden")
    copied = _golden_from(
        tiny_digits_dir, golden, relabel={"digit_0": "digit_1", "digit_1": "digit_7", "digit_7": "digit_0"}
    )
    config = small_training_config(tmp_path, data_dir=tiny_digits_dir, eval_data=golden, min_accuracy=0.5)

    summary, output = run_graft(tmp_path, config)
    # Every golden image was also in the training folders: dropped from training, each reported.
    dropped = {s["path"]: s["reason"] for s in summary["ingest"]["skipped_files"] if "golden set" in s["reason"]}
    assert sorted(dropped) == sorted(copied), dropped
    assert summary["ingest"]["skipped"] == len(copied)
    assert all("never trained on" in reason for reason in dropped.values())
    # Scored on every golden image, under the training classes' label ids.
    assert summary["golden"]["ingest"]["accepted"] == len(copied)
    assert summary["golden"]["metrics"]["example_count"] == len(copied)
    assert "sparse_categorical_accuracy" in summary["golden"]["metric_intervals"]
    assert f"golden set ({len(copied)} examples): accuracy" in output
    # The eval split blesses the candidate; the golden set does not, so nothing is pushed.
    assert summary["metrics"]["sparse_categorical_accuracy"] >= 0.5
    assert summary["golden"]["metrics"]["sparse_categorical_accuracy"] < 0.5
    assert not summary["golden"]["blessed"] and not summary["blessed"] and not summary["pushed"]
    assert summary["push_skipped_reason"].startswith("the golden set (eval_data) did not bless it:"), summary
    reasons = summary["not_blessed_because"]
    assert reasons and all(reason.startswith("golden set:") for reason in reasons), reasons
    assert serving_dir.versions(config["serving_dir"]) == []
