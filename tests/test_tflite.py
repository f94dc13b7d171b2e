"""TFLite export, checked against the SavedModel: real conversions, the TFLite interpreter, and
`graft predict --tflite` on a version folder, with a small model trained here on digits."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from components.backbones.preprocessing import preprocess_image_bytes
from components.contract import (
    IMAGE_KEY,
    LABEL_KEY,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    TFLITE_CHECK_FILE,
    TFLITE_CLIENT_FILE,
    TFLITE_DIR,
    TFLITE_LABELS_FILE,
    tflite_file,
)
from components.pusher.executor import tflite_failures
from components.serving.tflite_model import TFLiteClassifier, client_pixels
from components.trainer.export import make_signatures, save_serving_check
from components.trainer.model import build_model
from components.trainer.settings import ExportSettings
from components.trainer.stages import Stage
from components.trainer.tflite_export import TFLiteConversionError, convert, export_and_check
from components.trainer.training import TrainingOptions, train_stages
from pipeline.config import ConfigError, GraftConfig
from tests.conftest import encode, tiny_trainer_settings
from tests.pretraining import digit_pixels

pytestmark = pytest.mark.slow  # every test here trains or exports a model

CLASSES = ["digit_0", "digit_1", "digit_7"]
SIZE = 32


def _digits():
    digits = load_digits()
    chosen = [i for i, d in enumerate(digits.target) if d in (0, 1, 7)]
    images = [encode(digit_pixels(digits.images[i]), "PNG") for i in chosen]
    labels = [(0, 1, 7).index(digits.target[i]) for i in chosen]
    return images, labels


def _write_examples(path: str, images, labels) -> str:
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for image, label in zip(images, labels):
            feature = {
                IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


class _TransformStandIn:
    """What the Transform graph computes for an image (the same function its preprocessing_fn
    calls), so the test exports the real signatures without running a TFT analysis."""

    def __call__(self, raw):
        return {IMAGE_KEY: preprocess_image_bytes(raw[IMAGE_KEY], "mobilenet_v2", SIZE)}

    def transform_features_layer(self):
        return self


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A slim MobileNetV2 trained a few epochs on three digits, exported with the Trainer's
    signatures; the eval TFRecords (images it did not train on) and training TFRecords."""
    root = tmp_path_factory.mktemp("tflite")
    images, labels = _digits()
    train_images, train_labels = images[::2], labels[::2]
    eval_images, eval_labels = images[1::2], labels[1::2]
    settings = tiny_trainer_settings(train_batchnorm=True, batchnorm_momentum=0.9)
    tf.keras.utils.set_random_seed(0)
    model = build_model(settings, len(CLASSES))
    pixels = preprocess_image_bytes(tf.constant(train_images), "mobilenet_v2", SIZE)
    data = tf.data.Dataset.from_tensor_slices((pixels, train_labels)).shuffle(500, seed=0).batch(32)
    train_stages(model, [Stage("full", 6, "all", 0.002)], data, None, TrainingOptions(settings, 9))
    export_dir = str(root / "model")
    transform = _TransformStandIn()
    signatures = make_signatures(model, transform, tf.io.FixedLenFeature([], tf.string), CLASSES, settings)
    model.save(export_dir, save_format="tf", signatures=signatures, save_traces=False)
    eval_file = _write_examples(str(root / "eval.gz"), eval_images, eval_labels)
    save_serving_check(model, transform, [eval_file], export_dir)
    with open(os.path.join(export_dir, "assets.extra", "class_names.json"), "w") as f:
        json.dump(CLASSES, f)
    train_file = _write_examples(str(root / "train.gz"), train_images, train_labels)
    return {"dir": export_dir, "root": root, "train": [train_file], "eval": [eval_file], "eval_images": eval_images}


def test_float_and_uint8_models_classify_like_the_savedmodel(exported, tmp_path):
    export_dir = str(tmp_path / "model")
    shutil.copytree(exported["dir"], export_dir)
    settings = ExportSettings(tflite="both", int8_io="uint8", representative_images=100)
    report = export_and_check(
        export_dir, CLASSES, settings, SIZE, exported["train"], exported["eval"], str(tmp_path / "rejected")
    )
    float_entry, int8_entry = report["models"]["float"], report["models"]["int8"]
    print("\ncheck:", json.dumps(report))
    assert report["eval_images"] == len(exported["eval_images"])
    assert report["savedmodel_accuracy"] > 0.8  # the model learned its task
    # The float model computes what the SavedModel does: all but a tiny fraction of classes agree.
    assert float_entry["agreement_with_savedmodel"] >= 0.99 and abs(float_entry["drop_points"]) <= 1
    assert float_entry["passed"] and float_entry["input_dtype"] == "float32"
    assert int8_entry["input_dtype"] == "uint8" and int8_entry["representative_images"] == 100
    assert int8_entry["bytes"] < 0.5 * float_entry["bytes"]
    assert int8_entry["accuracy"] > 0.8 and int8_entry["ms_per_image"] > 0
    assert report["savedmodel_ms_per_image"] > 0 and report["savedmodel_bytes"] > float_entry["bytes"] / 2

    tflite_dir = os.path.join(export_dir, TFLITE_DIR)
    with open(os.path.join(tflite_dir, TFLITE_LABELS_FILE)) as f:
        assert f.read().splitlines() == CLASSES
    with open(os.path.join(tflite_dir, TFLITE_CLIENT_FILE)) as f:
        client = json.load(f)
    assert client["resize"]["method"] == "bilinear" and client["value_range"] == [0, 255]
    # check.json's accuracy is what the interpreter answers on the eval images, counted here again.
    with open(os.path.join(tflite_dir, TFLITE_CHECK_FILE)) as f:
        recorded = json.load(f)["models"]
    eval_labels = _digits()[1][1::2]
    for kind in ("float", "int8"):
        model = TFLiteClassifier(os.path.join(tflite_dir, tflite_file(kind)))
        answers, _ = model.classify([client_pixels(image, SIZE) for image in exported["eval_images"]])
        assert recorded[kind]["accuracy"] == pytest.approx(np.mean(answers.argmax(1) == eval_labels), abs=1e-6)

    # The pixels signature is the model's own: same probabilities as the TFLite float model.
    saved = tf.saved_model.load(export_dir).signatures[PIXELS_SIGNATURE]
    pixels = [client_pixels(image, SIZE) for image in exported["eval_images"][:16]]
    expected = saved(**{PIXELS_INPUT: tf.constant(np.stack(pixels))})["probabilities"].numpy()
    interpreter = TFLiteClassifier(os.path.join(tflite_dir, tflite_file("float")))
    got, _ = interpreter.classify(pixels)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_failing_check_keeps_the_model_out_of_the_version_and_says_why(exported, tmp_path):
    """int8 calibrated on one blank image cannot represent real activations; with no drop
    allowed, its check fails: the reason is recorded, the model goes to the rejected folder,
    and the Pusher refuses or pushes without it, as configured."""
    export_dir = str(tmp_path / "model")
    shutil.copytree(exported["dir"], export_dir)
    blank = _write_examples(str(tmp_path / "blank.gz"), [encode(np.zeros((8, 8), np.uint8), "PNG")], [0])
    settings = ExportSettings(tflite="both", representative_images=1, int8_max_drop_points=0.0)
    rejected = str(tmp_path / "rejected")
    report = export_and_check(export_dir, CLASSES, settings, SIZE, [blank], exported["eval"], rejected)
    int8_entry = report["models"]["int8"]
    print("\nint8 on one blank calibration image:", json.dumps(int8_entry))
    assert not int8_entry["passed"] and int8_entry["representative_images"] == 1
    assert (
        "points below the SavedModel's" in int8_entry["reason"] and "int8_max_drop_points=0.0" in int8_entry["reason"]
    )
    assert os.path.exists(os.path.join(rejected, tflite_file("int8")))
    assert not os.path.exists(os.path.join(export_dir, TFLITE_DIR, tflite_file("int8")))
    assert os.path.exists(os.path.join(export_dir, TFLITE_DIR, tflite_file("float")))
    assert tflite_failures(export_dir) == [int8_entry["reason"]]
    assert tflite_failures(exported["dir"]) == []  # no TFLite asked for: nothing to refuse


def test_an_op_without_a_tflite_builtin_is_named(tmp_path):
    class WithErfinv(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.float32, name=PIXELS_INPUT)])
        def serve(self, pixels):
            return {"probabilities": tf.math.erfinv(pixels / 256.0)}

    module = WithErfinv()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={PIXELS_SIGNATURE: module.serve})
    with pytest.raises(TFLiteConversionError, match=r"no TFLite built-in op for tf\.Erfinv") as caught:
        convert(str(tmp_path / "m"), "float")
    assert "Traceback" not in str(caught.value)


def test_graft_predict_tflite_agrees_with_the_savedmodel(exported, tmp_path):
    serving = tmp_path / "serving"
    version = str(serving / "1")
    shutil.copytree(exported["dir"], version)
    export_and_check(
        version, CLASSES, ExportSettings(tflite="float"), SIZE, exported["train"], exported["eval"], str(tmp_path / "r")
    )
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    paths = []
    for i, image in enumerate(exported["eval_images"][::5]):
        paths.append(str(held_out / f"{i:03d}.png"))
        with open(paths[-1], "wb") as f:
            f.write(image)
    graft = os.path.join(os.path.dirname(sys.executable), "graft")

    def predict(*flags):
        result = subprocess.run(
            [graft, "predict", "--serving-dir", str(serving), *flags, str(held_out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    saved, on_device = predict(), predict("--tflite", "float")
    assert [r["path"] for r in on_device] == [r["path"] for r in saved] == paths
    agree = sum(a["class_name"] == b["class_name"] for a, b in zip(saved, on_device))
    # The rule: the float model may differ from the SavedModel on at most 1 image in 100.
    assert agree >= len(paths) - len(paths) // 100, (agree, len(paths))
    missing = subprocess.run(
        [graft, "predict", "--serving-dir", str(serving), "--tflite", "int8", paths[0]], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no int8 TFLite model (model_int8.tflite)" in missing.stderr


def test_export_section_is_validated():
    with pytest.raises(ConfigError, match="export.tflite must be one of none, float, int8, both"):
        _ = GraftConfig(data_dir=".", export={"tflite": "fp16"}).export_settings
    with pytest.raises(ConfigError, match=r"'on_falure' \(did you mean 'on_failure'\?\)"):
        _ = GraftConfig(data_dir=".", export={"on_falure": "refuse"}).export_settings
    assert GraftConfig(data_dir=".").export_settings.kinds == ()


def test_uint8_input_is_the_pixel_value_whatever_the_calibration_images_reach(exported, tmp_path):
    """Calibrated on dim images (pixels up to 200), the uint8 model's input still takes the 0-255
    pixel values as they are: scale 1, zero point 0, as client.json states, and a device that
    rounds its pixels and sets them directly gets what graft predict (the interpreter's own
    parameters) gets."""
    export_dir = str(tmp_path / "model")
    shutil.copytree(exported["dir"], export_dir)
    dim = [encode((digit_pixels(d) * (200 / 255)).astype(np.uint8), "PNG") for d in load_digits().images[:60]]
    train = _write_examples(str(tmp_path / "dim.gz"), dim, [0] * len(dim))
    settings = ExportSettings(tflite="int8", int8_io="uint8", representative_images=60)
    export_and_check(export_dir, CLASSES, settings, SIZE, [train], exported["eval"], str(tmp_path / "rejected"))
    tflite_dir = os.path.join(export_dir, TFLITE_DIR)
    with open(os.path.join(tflite_dir, TFLITE_CLIENT_FILE)) as f:
        client = json.load(f)
    interpreter = tf.lite.Interpreter(os.path.join(tflite_dir, tflite_file("int8")))
    interpreter.allocate_tensors()
    [details] = interpreter.get_input_details()
    assert details["quantization"] == (1.0, 0)
    assert client["input"]["quantization"] == {tflite_file("int8"): {"scale": 1.0, "zero_point": 0}}
    classifier = TFLiteClassifier(os.path.join(tflite_dir, tflite_file("int8")))
    for image in exported["eval_images"][:10]:
        pixels = client_pixels(image, SIZE)
        interpreter.set_tensor(details["index"], np.round(pixels)[np.newaxis].astype(np.uint8))  # the device rule
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        scale, zero_point = out["quantization"]
        device = (interpreter.get_tensor(out["index"])[0].astype(np.float32) - zero_point) * scale
        np.testing.assert_allclose(device, classifier.probabilities(pixels), atol=1e-6)


def test_calibration_and_check_images_are_drawn_over_the_whole_split(tmp_path):
    """TFRecords written class by class: the first N records are one class. A limited read
    draws over the whole split, the same records every time."""
    from components.trainer.tflite_export import read_examples

    image = encode(np.zeros((4, 4), np.uint8), "PNG")
    path = _write_examples(str(tmp_path / "sorted.gz"), [image] * 600, [0] * 300 + [1] * 300)
    labels = [label for _, label in read_examples([path], 100)]
    assert len(labels) == 100 and 35 <= labels.count(1) <= 65
    assert labels == [label for _, label in read_examples([path], 100)]
    assert len(list(read_examples([path]))) == 600
