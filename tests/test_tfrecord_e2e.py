"""TFRecord input (--tfrecord-dir) through the real pipeline, and ExampleValidator stopping it."""

import glob
import os

import pytest
import tensorflow as tf

from tests.conftest import run_graft, small_training_config


def _write_tfrecords(path, digits_dir, drop_label_every=0):
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
def test_tfrecords_train_and_anomalies_stop_the_run(tmp_path, tiny_digits_dir):
    digits_dir = tiny_digits_dir  # 40 images a class: the input path and its checks, not accuracy
    bad_dir = tmp_path / "bad"
    _write_tfrecords(str(bad_dir / "data.tfrecord"), digits_dir, drop_label_every=10)
    summary, output = run_graft(
        tmp_path, small_training_config(tmp_path, tfrecord_dir=str(bad_dir), pipeline_name="bad"), "bad", expect_rc=1
    )
    assert "error in ExampleValidator" in output
    assert "feature 'label'" in output
    assert "Traceback" not in output.split("error in ExampleValidator")[1]

    good_dir = tmp_path / "good"
    count = _write_tfrecords(str(good_dir / "data.tfrecord"), digits_dir)
    config = small_training_config(
        tmp_path,
        tfrecord_dir=str(good_dir),
        pipeline_name="good",
        class_names=["zero", "one", "seven"],
        stages="frozen",  # one epoch of the head: the input path and the export are the point
        epochs=1,
        min_head_steps=0,
        learning_rate=0.01,
        min_accuracy=0.0,
        mixed_precision="mixed_float16",  # float16 compute on this CPU: the served model must not be
    )
    summary, output = run_graft(tmp_path, config, "good")
    assert "precision mixed_float16" in open(summary["log_file"]).read()
    assert summary["blessed"] is True
    assert 0 < summary["metrics"]["example_count"] < count
    assert summary["pushed_model_dir"]
    loaded = tf.saved_model.load(summary["pushed_model_dir"])  # it passed the fresh-process serving check
    for name, signature in loaded.signatures.items():  # float32 all through, whatever trained it
        assert {o.dtype for o in signature.structured_outputs.values() if o.dtype.is_floating} == {tf.float32}, name
        graph = signature.graph.as_graph_def()
        ops = [n for f in graph.library.function for n in f.node_def] + list(graph.node)
        assert not [n.name for n in ops if n.attr["T"].type == tf.float16.as_datatype_enum], name
    image = open(sorted(glob.glob(os.path.join(digits_dir, "digit_7", "*.png")))[0], "rb").read()
    out = loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([image]))
    names = ["zero", "one", "seven"]
    assert out["class_name"].numpy()[0].decode() == names[int(out["class_id"].numpy()[0])]
