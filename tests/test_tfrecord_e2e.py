"""TFRecord input (--tfrecord-dir) through the real pipeline: ExampleValidator stopping it."""

import glob
import os

import pytest
import tensorflow as tf

from tests.conftest import run_graft, small_training_config


def write_tfrecords(path, digits_dir, drop_label_every=0) -> int:
    """The PNGs of `digits_dir`'s class folders as one TFRecord file of tf.Examples (image, label:
    the class folder's index in sorted order); returns how many."""
    files = sorted(glob.glob(os.path.join(digits_dir, "*", "*.png")))
    classes = sorted({os.path.basename(os.path.dirname(f)) for f in files})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for i, f in enumerate(files):
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[open(f, "rb").read()]))}
            if not (drop_label_every and i % drop_label_every == 0):
                label = classes.index(os.path.basename(os.path.dirname(f)))
                feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return len(files)


@pytest.mark.e2e
def test_tfrecord_anomalies_stop_the_run_at_the_example_validator(tmp_path, tiny_digits_dir):
    """Every tenth record without its label: TFX's ExampleValidator stops the run with the
    feature named, no traceback. (TFRecords trained, evaluated and pushed: the Tuner's run in
    test_tuner.py.)"""
    bad_dir = tmp_path / "bad"
    write_tfrecords(str(bad_dir / "data.tfrecord"), tiny_digits_dir, drop_label_every=10)
    summary, output = run_graft(
        tmp_path, small_training_config(tmp_path, tfrecord_dir=str(bad_dir), pipeline_name="bad"), "bad", expect_rc=1
    )
    assert "error in ExampleValidator" in output
    assert "feature 'label'" in output
    assert "Traceback" not in output.split("error in ExampleValidator")[1]
