"""The whole DAG, for real: LocalDagRunner, Beam DirectRunner, SQLite MLMD, through the CLI."""

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from components.contract import EXTRA_DIR, PROVENANCE_FILE, SERVING_CHECK_FILE
from components.serving import check as serving_check
from components.serving import serving_dir
from pipeline.summary import run_outputs
from tests.conftest import run_graft, small_training_config

_CHECK_SERVING = r"""
import json, sys, os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
model_dir, files = sys.argv[1], sys.argv[2:]
model = tf.saved_model.load(model_dir)
images = [open(f, "rb").read() for f in files]
by_bytes = model.signatures["serving_image_bytes"](image_bytes=tf.constant(images))
examples = [tf.train.Example(features=tf.train.Features(feature={
    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))})).SerializeToString() for b in images]
by_example = model.signatures["serving_default"](examples=tf.constant(examples))
print(json.dumps({k: {"bytes": by_bytes[k].numpy().tolist(), "example": by_example[k].numpy().tolist()}
                  for k in ("probabilities", "class_id")} |
                 {"class_name": [n.decode() for n in by_bytes["class_name"].numpy()]}))
"""


def _run_until_killed(config: dict, path, line_seen: str) -> str:
    """Starts the CLI on `config` and SIGKILLs its whole process group once `line_seen` is
    printed, as a preempted node would (no clean-up at all); returns what it printed."""
    import yaml

    from tests import forked_cli

    path.write_text(yaml.safe_dump(config))
    output = str(path) + ".out"
    rc = forked_cli.run(["--config", str(path)], output, dict(os.environ), kill_once_printed=line_seen)
    assert rc == -signal.SIGKILL, rc
    with open(output, encoding="utf-8") as f:
        return f.read()


@pytest.mark.e2e
def test_pipeline_resumes_after_a_kill_blesses_pushes_serves_and_reruns_as_a_no_op(tmp_path, digits_dir):
    """One DAG, several runs: killed mid-training and resumed, then blessed, pushed and served;
    rerun on the same data: nothing trained; a worse candidate (new data) refused."""
    config = small_training_config(tmp_path, data_dir=digits_dir, export={"tflite": "float"}, max_class_recall_drop=0.2)
    # Killed after the second epoch: nothing is pushed; the next run resumes the Trainer from its
    # last completed epoch, not from zero, and its upstream components are not run again.
    seen = _run_until_killed(config, tmp_path / "killed.yaml", "epoch 2/6")
    assert "epoch 2/6" in seen, seen
    assert serving_dir.versions(config["serving_dir"]) == []
    first, stdout = run_graft(tmp_path, config, "first")
    assert "resuming after an interruption" in stdout
    epochs = [line for line in stdout.splitlines() if "full: epoch" in line]
    assert epochs and "epoch 3/6" in epochs[0], epochs
    assert first["component_state"]["Trainer"] == "complete"
    assert first["component_state"]["Transform"] == "cached"
    # Model selection and curves on a part of the training split; the eval split is the Evaluator's alone.
    assert "carved from the training split; the eval split is left to the Evaluator" in stdout
    assert "Trainer done" in stdout and "epoch 6/6" in stdout  # the progress view
    assert first["blessed"] is True
    assert first["metrics"]["sparse_categorical_accuracy"] >= 0.6
    pushed = first["pushed_model_dir"]
    assert pushed and serving_dir.versions(config["serving_dir"]) == [int(os.path.basename(pushed))]
    # The TFLite model was checked on the eval split against the SavedModel and pushed inside the version.
    tflite = first["tflite"]
    assert tflite["eval_images"] == first["metrics"]["example_count"]
    assert tflite["savedmodel_accuracy"] == pytest.approx(first["metrics"]["sparse_categorical_accuracy"], abs=1e-6)
    assert tflite["models"]["float"]["passed"] and tflite["models"]["float"]["pushed"]
    assert os.path.getsize(os.path.join(pushed, "tflite", "model_float.tflite")) > 0
    assert "TFLite, checked on" in stdout
    ingest = first["ingest"]
    images = glob.glob(os.path.join(digits_dir, "*", "*.png"))
    assert ingest["total"] == ingest["accepted"] == len(images)
    assert ingest["class_names"] == ["digit_0", "digit_1", "digit_7"]
    assert sum(sum(c.values()) for c in ingest["accepted_per_split"].values()) == len(images)
    assert set(first["component_seconds"]) >= {
        "ImageExampleGen",
        "StatisticsGen",
        "Transform",
        "Trainer",
        "Evaluator",
        "Pusher",
    }

    # The version says what made it: the data, the whole config, the code, the metrics, the run.
    with open(os.path.join(pushed, PROVENANCE_FILE)) as f:
        record = json.load(f)
    assert record["pipeline_run_id"] == first["run_id"] and record["replaced_version"] is None
    assert record["data"]["ingest"]["accepted"] == len(images) and record["data"]["ingest"]["quarantined"] == 0
    assert record["data"]["span"] == 0 and f"num_files:{len(images)}," in record["data"]["input_fingerprint"]
    assert record["config"]["data_dir"] == digits_dir and record["config"]["class_names"] == ingest["class_names"]
    assert record["code_version"].startswith("graft 0.1.0 at ")  # this checkout's commit
    accuracy = first["metrics"]["sparse_categorical_accuracy"]
    assert record["metrics"]["sparse_categorical_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # With their 95 % intervals (TFMA's jackknife), in the version's record and the run's summary.
    bounds = first["metric_intervals"]["sparse_categorical_accuracy"]
    assert bounds["lower"] <= accuracy <= bounds["upper"] and 0 < bounds["upper"] - bounds["lower"] < 0.3, bounds
    assert record["metric_intervals"]["sparse_categorical_accuracy"] == bounds
    assert first["promotion"] is None  # nothing served: no change to judge, min_accuracy alone
    assert set(record["per_class_metrics"]) == set(ingest["class_names"])
    history = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "graft"),
            "history",
            "--serving-dir",
            config["serving_dir"],
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert history.returncode == 0, history.stderr
    [row] = json.loads(history.stdout)
    assert (
        row["version"] == int(os.path.basename(pushed))
        and row["serving"]
        and row["reason"] == "blessed by the Evaluator"
    )
    assert row["accuracy"] == record["metrics"]["sparse_categorical_accuracy"]

    # Transform does not materialise decoded images: its outputs stay small next to the raw examples.
    def size(pattern):
        return sum(
            os.path.getsize(f)
            for d in glob.glob(pattern)
            for f in glob.glob(d + "/**", recursive=True)
            if os.path.isfile(f)
        )

    raw = size(str(tmp_path / "root" / "ImageExampleGen" / "examples" / "*"))
    transformed = size(str(tmp_path / "root" / "Transform" / "*" / "*"))
    assert transformed <= 2 * raw, (transformed, raw)

    # A fresh process loads the pushed model; raw bytes and tf.Example give identical answers.
    sample = sorted(images)[::60][:8]
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_SERVING, pushed, *sample], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(served["probabilities"]["bytes"], served["probabilities"]["example"], atol=1e-6)
    assert served["class_id"]["bytes"] == served["class_id"]["example"]
    truth = [os.path.basename(os.path.dirname(p)) for p in sample]
    assert sum(a == b for a, b in zip(served["class_name"], truth)) >= len(sample) // 2

    # The report: offline HTML, JSON, and the two plots.
    report_dir = os.path.dirname(first["report"])
    for name in ("report.html", "report.json", "training_curves.png", "confusion_matrix.png"):
        assert os.path.getsize(os.path.join(report_dir, name)) > 0
    with open(os.path.join(report_dir, "report.json")) as f:
        report = json.load(f)
    assert report["decision"]["blessed"] is True
    matrix = report["confusion_matrix"]["rows_actual_columns_predicted"]
    assert sum(map(sum, matrix)) == first["metrics"]["example_count"]
    assert first["metrics"]["macro_f1_score"] > 0 and "precision/class_2" in first["metrics"]
    for c in range(3):  # per-class numbers are the confusion matrix's, at the arg-max class
        column = sum(row[c] for row in matrix)
        assert first["metrics"][f"recall/class_{c}"] == pytest.approx(matrix[c][c] / sum(matrix[c]), abs=1e-6)
        assert first["metrics"][f"precision/class_{c}"] == pytest.approx(matrix[c][c] / column, abs=1e-6)
    assert "top_k_accuracy" in first["metrics"]  # 3 classes: top-2

    # graft predict agrees with the signature on the same images.
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    predicted = subprocess.run(
        [graft, "predict", "--serving-dir", config["serving_dir"], *sample], capture_output=True, text=True, timeout=300
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["path"] for r in rows] == sample
    assert [r["class_name"] for r in rows] == served["class_name"]
    for row, probabilities in zip(rows, served["probabilities"]["bytes"]):
        assert row["probability"] == pytest.approx(max(probabilities), abs=1e-5)

    # The serving check catches a model that answers differently from the Trainer's.
    tampered = str(tmp_path / "tampered")
    shutil.copytree(pushed, tampered)
    check_file = os.path.join(tampered, EXTRA_DIR, SERVING_CHECK_FILE)
    with open(check_file) as f:
        data = json.load(f)
    data["probabilities"][0][0] += 0.01  # reversing the vector changed nothing when it was [0, 1, 0]
    with open(check_file, "w") as f:
        json.dump(data, f)
    with pytest.raises(serving_check.ServingCheckError, match="answers differently"):
        serving_check.check_in_fresh_process(tampered)

    # The version records what the next run compares with: the data, the model's config and code.
    key = record["training_key"]
    assert (key["span"], key["input_fingerprint"]) == (0, record["data"]["input_fingerprint"])
    assert key["model_config"]["backbone"] == config["backbone"] and "pipeline_root" not in key["model_config"]

    # Nothing new (same data, config and code as the serving version): the run stops after the
    # RetrainGate, exit 0, says why for a scheduler, and trains and pushes nothing.
    second, second_out = run_graft(tmp_path, config, "second")
    assert second["component_state"] == {"ImageExampleGen": "cached", "RetrainGate": "complete"}, second
    version = os.path.basename(pushed)
    assert second["run_skipped_reason"].startswith(
        f"nothing new: serving version {version} was trained on the same data (span 0, same input fingerprint)"
    ), second["run_skipped_reason"]
    assert second["retrain"] == {"retrain": False, "reason": second["run_skipped_reason"]}
    assert "not trained: nothing new" in second_out and "Trainer" not in second["component_seconds"]
    assert second["pushed_model_dir"] is None
    assert serving_dir.versions(config["serving_dir"]) == [int(os.path.basename(pushed))]
    # Each run's summary reads its own executions (by its run id), not the latest of each component.
    assert first["run_id"] != second["run_id"] and first["run_id"] in first["report"]
    pusher = run_outputs(config["metadata_path"], config["pipeline_name"], first["run_id"])["Pusher"]
    pushed_artifact = pusher["outputs"]["pushed_model"][0]
    assert pushed_artifact.custom_properties["pushed_destination"].string_value == pushed
    assert (
        json.loads(pushed_artifact.custom_properties["provenance"].string_value)["pipeline_run_id"] == first["run_id"]
    )

    # A worse candidate (trained on shuffled labels) is not blessed and pushes nothing. Its eval
    # folder keeps the true labels: shuffled there too, both models would score at chance and
    # which one scored higher would be a coin toss.
    shuffled = tmp_path / "shuffled"
    rng = random.Random(0)
    classes = sorted(os.listdir(digits_dir))
    for i, path in enumerate(sorted(images)):
        true_class = os.path.basename(os.path.dirname(path))
        target = shuffled / "eval" / true_class if i % 5 == 0 else shuffled / "train" / rng.choice(classes)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / os.path.basename(path))
    # Two epochs: labels at random teach nothing in six either.
    worse = {**config, "data_dir": str(shuffled), "stages": [{**config["stages"][0], "epochs": 2}]}
    third, _ = run_graft(tmp_path, worse, "third")
    assert third["blessed"] is False
    assert third["pushed_model_dir"] is None
    assert serving_dir.versions(config["serving_dir"]) == [int(os.path.basename(pushed))]
    assert any("against the model now serving" in r for r in third["not_blessed_because"])
    # The default rule (promote_when: better) judged the accuracy change's interval, and said so.
    change = third["promotion"]["accuracy_change"]
    assert third["promotion"]["promote_when"] == "better" and not third["promotion"]["promoted"]
    assert change["lower"] <= change["value"] <= change["upper"] and change["upper"] < 0, change
    assert third["promotion"]["reason"] in third["not_blessed_because"]
    # Per class too (max_class_recall_drop 0.2; the overall drop is over 0.2, so some class's is):
    # the refusal names the class. The first run had nothing serving: no class gate applied.
    assert any(
        r.startswith("class 'digit_") and "(max_class_recall_drop)" in r for r in third["not_blessed_because"]
    ), third["not_blessed_because"]
    with open(os.path.join(os.path.dirname(third["report"]), "report.json")) as f:
        decision = json.load(f)["decision"]
    assert decision["blessed"] is False and decision["failures"] == third["not_blessed_because"]
    assert "NOT blessed" in open(third["report"]).read()

    # The refused candidate's data, config and code again (tomorrow's scheduled run, no new data):
    # not trained again while the model it was judged against still serves.
    fourth, _ = run_graft(tmp_path, worse, "fourth")
    assert "Trainer" not in fourth["component_seconds"], fourth["component_seconds"]
    assert fourth["run_skipped_reason"].startswith(
        f"nothing new: the same data, config and code were trained in run {third['run_id']} "
    ), fourth["run_skipped_reason"]
    assert (
        f"refused against serving version {version}, which still serves: not blessed by the Evaluator: "
        in (fourth["run_skipped_reason"])
    )
