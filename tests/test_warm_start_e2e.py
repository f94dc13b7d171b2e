"""init_from: serving: a retrain starts from the weights of the model now serving (a first run,
with nothing serving, starts cold), and a model cannot continue on other classes or on a
vocabulary computed anew."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from components.contract import EXAMPLES_SIGNATURE, LABEL_KEY
from components.files import tfrecords
from components.serving import serving_dir
from tests.conftest import graft_cli, run_graft, serving_version_of_classes, small_training_config, write_digit_pngs


def _served_loss(version: str, pipeline_root: str) -> float:
    """The served model's mean cross-entropy on the training split it was trained on (the
    ExampleGen's records, through the served tf.Example signature)."""
    model = tf.saved_model.load(version)
    paths = glob.glob(os.path.join(pipeline_root, "ImageExampleGen", "examples", "*", "Split-train", "*"))
    records = [r.numpy() for r in tfrecords(sorted(paths))]
    labels = np.array([tf.train.Example.FromString(r).features.feature[LABEL_KEY].int64_list.value[0] for r in records])
    probabilities = model.signatures[EXAMPLES_SIGNATURE](examples=tf.constant(records))["probabilities"].numpy()
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


@pytest.mark.e2e
def test_a_warm_start_begins_at_the_served_models_loss(tmp_path, tiny_digits_dir):
    config = small_training_config(tmp_path, data_dir=tiny_digits_dir, init_from="serving", dropout=0.0)
    first, output = run_graft(tmp_path, config, "first")
    assert "nothing serves yet" in output  # a first run starts cold
    assert first["pushed"], output
    version = serving_dir.newest(config["serving_dir"])
    cold_first_epoch = first["training_history"][0]["loss"]

    # The same images, one epoch at a rate too small to move a weight, BatchNorm in inference mode
    # and no dropout: the training loss it reports is the loss of the weights it started from.
    still = {
        **config,
        "stages": [{"name": "full", "epochs": 1, "trainable": "all", "learning_rate": 1e-9}],
        "train_batchnorm": False,
    }
    second, output = run_graft(tmp_path, still, "second")
    assert f"starting from the weights of serving version {os.path.basename(version)}" in output
    assert second["training_choices"]["init_from"] == f"serving version {os.path.basename(version)}"
    warm_first_epoch = second["training_history"][0]["loss"]
    served = _served_loss(version, config["pipeline_root"])
    print(f"\nfirst-epoch loss: cold {cold_first_epoch:.3f}, warm {warm_first_epoch:.3f}; served model {served:.3f}")
    assert served < 0.5 * cold_first_epoch  # the served model learned something
    # The training part is the training split less its 10 % validation part: close, not equal.
    assert abs(warm_first_epoch - served) <= 0.02 + 0.15 * served, (warm_first_epoch, served)
    # Its accuracy is the served model's: the candidate is the served model, unchanged.
    assert second["metrics"]["sparse_categorical_accuracy"] == pytest.approx(
        first["metrics"]["sparse_categorical_accuracy"], abs=0.02
    )


def test_a_warm_start_on_other_classes_is_refused_before_tfx(tmp_path):
    write_digit_pngs(str(tmp_path / "data"), {"a": 0, "b": 1}, 6)
    serving_version_of_classes(tmp_path / "serving", ["a", "b", "c"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"allow_class_change": True, "init_from": "serving"}))
    args = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--weights", "none"]
    result, _ = graft_cli(*args, "--serving-dir", str(tmp_path / "serving"))
    assert result.returncode == 2, result.stderr
    assert "removed ['c']" in result.stderr and "init_from: serving continues that model" in result.stderr

    # A vocabulary computed from each run's data cannot continue: refused by the config check.
    texts = tmp_path / "texts"
    for label in ("pos", "neg"):
        (texts / label).mkdir(parents=True)
        for i in range(6):
            (texts / label / f"{i}.txt").write_text(f"{label} text number {i}")
    result, _ = graft_cli("--text-data", str(texts), "--backbone", "text_scratch", "--init-from", "serving")
    assert result.returncode == 2, result.stderr
    assert "text_scratch computes its vocabulary anew" in result.stderr
