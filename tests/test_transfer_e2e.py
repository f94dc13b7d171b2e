"""Transfer learning through the default path, measured: a small backbone pretrained here on one
task (which of ten digits), its weights file given to the pipeline with nothing else changed
(stages auto = two_stage, BatchNorm frozen, the top layers unfrozen), on a second task with
other images (even or odd, 360 images): far above the same pipeline from scratch, and
fine-tuning no worse than the frozen stage.

The transferred run also carries a golden set (eval_data) that refuses it: a fixed labelled set
on which every candidate is scored besides the span's eval split, its images dropped from
training, a push needing its blessing too. (One run for both: each pipeline run costs the suite
about a minute. The golden set blessing and being recorded in the pushed version: the run-local
test in test_kubeflow.py.)"""

import os
import shutil

import pytest
from sklearn.datasets import load_digits

from components.serving import serving_dir
from tests.conftest import run_graft
from tests.pretraining import pretrain_backbone, write_digit_folders

GOLDEN_PER_CLASS = 6  # golden images per class, copied out of the training folders


def write_parity_task(root: str) -> int:
    """The images the pretraining never saw (every fifth), as class folders even/ and odd/."""
    return write_digit_folders(root, range(0, len(load_digits().target), 5), lambda d: "odd" if d % 2 else "even")


def golden_set_from(data_dir: str, golden: str, relabel: dict) -> list:
    """Copies the first GOLDEN_PER_CLASS images of each class folder of `data_dir` into `golden`,
    filed under the class `relabel` names; returns the copied training paths."""
    copied = []
    for class_name in sorted(os.listdir(data_dir)):
        target = os.path.join(golden, relabel[class_name])
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(data_dir, class_name)))[:GOLDEN_PER_CLASS]:
            shutil.copy(os.path.join(data_dir, class_name, name), os.path.join(target, name))
            copied.append(f"{class_name}/{name}")
    return copied


def _config(tmp_path, name: str, data: str, weights: str) -> dict:
    return {  # nothing about stages, rates or BatchNorm: the defaults decide (the head's step minimum trimmed for the suite)
        "pipeline_name": name,
        "pipeline_root": str(tmp_path / name / "root"),
        "metadata_path": str(tmp_path / name / "metadata.db"),
        "serving_dir": str(tmp_path / name / "serving"),
        "data_dir": data,
        "backbone": "mobilenet_v2",
        "backbone_kwargs": {"alpha": 0.35},
        "image_size": 32,
        "weights": weights,
        "validation_percent": 25,
        "min_head_steps": 100,  # the scratch twin's 15 epochs; fine-tuning keeps its default budget
        "min_accuracy": 0.0,
    }


@pytest.mark.e2e
def test_a_pretrained_backbone_transfers_through_the_default_path(tmp_path):
    weights = str(tmp_path / "pretrained_mobilenet_v2.h5")
    others = [i for i in range(len(load_digits().target)) if i % 5]
    assert pretrain_backbone(weights, others, epochs=20) > 0.8  # it learned its own task
    data = str(tmp_path / "parity")
    count = write_parity_task(data)

    # The golden set: even images filed as odd and odd as even, so the candidate that the eval
    # split blesses (min_accuracy 0.5) fails it. Its 12 images leave this run's data alone, from
    # training and from the eval split (the split is by path): the transferred model learns from
    # a few fewer images than its scratch twin, not more, and is scored on an eval split short of
    # the few of them that fell there.
    golden = str(tmp_path / "golden")
    copied = golden_set_from(data, golden, relabel={"even": "odd", "odd": "even"})
    config = {**_config(tmp_path, "transfer", data, weights), "eval_data": golden, "min_accuracy": 0.5}
    transfer, output = run_graft(tmp_path, config, "transfer")
    scratch, scratch_output = run_graft(tmp_path, _config(tmp_path, "scratch", data, "none"), "scratch")
    transfer_accuracy = transfer["metrics"]["sparse_categorical_accuracy"]
    scratch_accuracy = scratch["metrics"]["sparse_categorical_accuracy"]
    print(
        f"\neval accuracy, even or odd ({count} images): pretrained {transfer_accuracy:.3f}, "
        f"from scratch {scratch_accuracy:.3f}"
    )
    assert "head" in output and "fine_tune" in output  # two_stage, the default with pretrained weights
    assert "training from scratch" in scratch_output
    assert transfer_accuracy >= 0.8 and transfer_accuracy >= scratch_accuracy + 0.15

    history = transfer["training_history"]
    frozen = [row for row in history if row["stage"] == "head"][-1]["val_accuracy"]
    fine_tuned = [row for row in history if row["stage"] == "fine_tune"][-1]["val_accuracy"]
    one_example = 1 / (0.25 * 0.8 * count)  # validation part: a quarter of the 80% train split (~76 images)
    # Fine-tuning the whole backbone does not wreck what the frozen stage reached: measured 0.987 ->
    # 0.947 (3 of 76 validation images) with the default budget; with a third of it, 0.961 -> 0.882.
    assert fine_tuned >= frozen - 5 * one_example - 1e-6, (frozen, fine_tuned)

    # The golden set. Every golden image was also in the training folders: dropped from
    # training, each reported; scored on every golden image under the training classes' label ids.
    golden_skips = [s for s in transfer["ingest"]["skipped_files"] if "golden set" in s["reason"]]
    assert sorted(s["path"] for s in golden_skips) == sorted(copied), golden_skips
    assert all("never trained on" in s["reason"] for s in golden_skips)
    assert transfer["golden"]["ingest"]["accepted"] == len(copied)
    assert transfer["golden"]["metrics"]["example_count"] == len(copied)
    assert "sparse_categorical_accuracy" in transfer["golden"]["metric_intervals"]
    assert f"golden set ({len(copied)} examples): accuracy" in output
    # The eval split blesses the candidate; the golden set does not, so nothing is pushed.
    assert transfer["golden"]["metrics"]["sparse_categorical_accuracy"] < 0.5
    assert not transfer["golden"]["blessed"] and not transfer["blessed"] and not transfer["pushed"]
    assert transfer["push_skipped_reason"].startswith("the golden set (eval_data) did not bless it:"), transfer
    reasons = transfer["not_blessed_because"]
    assert reasons and all(reason.startswith("golden set:") for reason in reasons), reasons
    assert serving_dir.versions(config["serving_dir"]) == []
