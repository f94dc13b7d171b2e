"""On-device models: TFLite (float, int8) converted from the SavedModel's pixels signature, each
checked on the eval split against the SavedModel before anything is pushed.

A model that passes goes to `<SavedModel>/tflite/` (so the Pusher publishes it inside the same
version, atomically, and rollback carries it along); one that fails goes to the Trainer's
model_run folder instead, for inspection. `tflite/check.json` records every model's accuracy
next to the SavedModel's, size, CPU latency, and the reason of any failure; the Pusher reads it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from components.contract import (
    EXTRA_DIR,
    IMAGE_BYTES_INPUT,
    IMAGE_BYTES_SIGNATURE,
    IMAGE_KEY,
    LABEL_KEY,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    PROBABILITIES,
    SAVED_MODEL_FILE,
    SERVING_LIMITS_FILE,
    TFLITE_CHECK_FILE,
    TFLITE_CLIENT_FILE,
    TFLITE_DIR,
    TFLITE_LABELS_FILE,
    tflite_file,
)
from components.files import tfrecords
from components.serving.tflite_model import TFLiteClassifier, client_contract, client_pixels
from components.trainer.settings import ExportSettings

log = logging.getLogger("graft.trainer")

CHUNK = 64
LATENCY_SAMPLE = 100  # one-image SavedModel calls timed (after the first, which traces)


class TFLiteConversionError(RuntimeError):
    """The converter refused the model; the message names the ops at fault when it can."""


def unsupported_ops(err: Exception) -> list[str]:
    """TensorFlow ops the converter found no TFLite built-in for, from its structured errors
    (or, failing that, its message)."""
    names = {e.operator.name for e in getattr(err, "errors", []) if e.operator.name}
    names |= set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", str(err)))
    return sorted(names)


def convert(saved_model_dir: str, kind: str, representative=None, int8_io: str = "float") -> bytes:
    """The SavedModel's pixels signature as a TFLite flatbuffer, with built-in ops only.
    int8: full-integer quantization calibrated on `representative` (float32 [size, size, 3]
    pixels), uint8 input and output when `int8_io` is uint8."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[PIXELS_SIGNATURE])
    if kind == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([p[np.newaxis]] for p in calibration_pixels(representative))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io == "uint8":
            converter.inference_input_type = converter.inference_output_type = tf.uint8
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and, for some graphs, others
        ops = unsupported_ops(err)
        if ops:
            raise TFLiteConversionError(
                f"{kind} TFLite conversion failed: no TFLite built-in op for {', '.join(ops)} (in the backbone); "
                "choose a backbone that converts (the MobileNet and EfficientNet families do) or turn export.tflite off"
            ) from None
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise TFLiteConversionError(f"{kind} TFLite conversion failed: {first[:300]}") from None


def calibration_pixels(representative: list) -> list:
    """The calibration images, the first with one pixel at 0 and one at 255: the input is
    quantized over the range its contract states, [0, 255], not over the range the calibration
    images happen to reach (images peaking at 200 gave a uint8 input scale of 0.78, so a device
    passing its pixel values as they are would have been wrong, and brighter pixels clipped).
    Pinned, a uint8 input is the pixel value itself (scale 1, zero point 0)."""
    pixels = [np.asarray(p, np.float32) for p in representative]
    if pixels:
        pixels[0] = pixels[0].copy()
        pixels[0][0, 0], pixels[0][-1, -1] = 0.0, 255.0
    return pixels


def read_examples(files, limit: int = 0, seed: int = 0) -> Iterator[tuple[bytes, int]]:
    """(image bytes, label) of the tf.Examples in `files` (TFRecords): all of them, or
    `limit` drawn uniformly over the whole split (a fixed-seed reservoir sample, yielded in file
    order), not the first `limit`: TFRecords are often written class by class."""
    spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string), LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    records = tfrecords(files).as_numpy_iterator()
    if limit:
        rng, drawn = random.Random(seed), []
        for index, record in enumerate(records):
            if len(drawn) < limit:
                drawn.append((index, record))
            elif (slot := rng.randrange(index + 1)) < limit:
                drawn[slot] = (index, record)
        records = (record for _, record in sorted(drawn, key=lambda item: item[0]))
    for record in records:
        example = tf.io.parse_single_example(record, spec)
        yield example[IMAGE_KEY].numpy(), int(example[LABEL_KEY])


def _saved_model_bytes(export_dir: str) -> int:
    """The graph and the variables: what a server loads (assets.extra and tflite/ aside)."""
    total = tf.io.gfile.stat(os.path.join(export_dir, SAVED_MODEL_FILE)).length
    for dirpath, _, names in tf.io.gfile.walk(os.path.join(export_dir, "variables")):
        total += sum(tf.io.gfile.stat(os.path.join(dirpath, n)).length for n in names)
    return total


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export_and_check(
    export_dir: str,
    class_names: list,
    export: ExportSettings,
    image_size: int,
    train_files,
    eval_files,
    rejected_dir: str,
) -> dict:
    """Converts, checks and places the TFLite models `export` asks for; returns (and writes to
    `tflite/check.json`) what the check found."""

    def files(patterns):
        return [f for p in patterns for f in tf.io.gfile.glob(p)]

    converted, report = {}, {"models": {}}
    for kind in export.kinds:
        entry = report["models"][kind] = {"max_drop_points": export.max_drop_points(kind)}
        representative = None
        if kind == "int8":
            limit = export.representative_images
            representative = [client_pixels(b, image_size) for b, _ in read_examples(files(train_files), limit)]
            entry["representative_images"] = len(representative)
        try:
            converted[kind] = convert(export_dir, kind, representative, export.int8_io)
        except TFLiteConversionError as err:
            entry.update(passed=False, reason=str(err))
            log.warning("TFLite %s: %s", kind, err)

    models = {kind: TFLiteClassifier(content=content) for kind, content in converted.items()}
    loaded = tf.saved_model.load(export_dir)
    saved, saved_pixels = loaded.signatures[IMAGE_BYTES_SIGNATURE], loaded.signatures[PIXELS_SIGNATURE]
    saved_ms = []
    labels, saved_classes = [], []
    classes = {kind: [] for kind in models}
    milliseconds = {kind: [] for kind in models}
    examples = read_examples(files(eval_files), export.check_images)
    for chunk in _chunks(examples, CHUNK):
        images = [image for image, _ in chunk]
        labels += [label for _, label in chunk]
        saved_classes += list(np.argmax(saved(**{IMAGE_BYTES_INPUT: tf.constant(images)})[PROBABILITIES], -1))
        pixels = [client_pixels(image, image_size) for image in images]
        for p in pixels[: max(0, LATENCY_SAMPLE - len(saved_ms))]:  # the same one-image calls, for comparison
            started = time.perf_counter()
            saved_pixels(**{PIXELS_INPUT: tf.constant(p[np.newaxis])})
            saved_ms.append(1000 * (time.perf_counter() - started))
        for kind, model in models.items():
            probabilities, ms = model.classify(pixels)
            classes[kind] += list(np.argmax(probabilities, -1))
            milliseconds[kind].append(ms * len(pixels))
    labels, saved_classes = np.array(labels), np.array(saved_classes)
    saved_accuracy = float(np.mean(saved_classes == labels)) if len(labels) else 0.0
    report.update(
        eval_images=len(labels),
        savedmodel_accuracy=round(saved_accuracy, 6),
        savedmodel_bytes=_saved_model_bytes(export_dir),
        savedmodel_ms_per_image=round(float(np.median(saved_ms[1:] or saved_ms or [0.0])), 3),
    )

    tflite_dir = os.path.join(export_dir, TFLITE_DIR)
    tf.io.gfile.makedirs(tflite_dir)
    for kind, model in models.items():
        predicted = np.array(classes[kind])
        accuracy = float(np.mean(predicted == labels)) if len(labels) else 0.0
        drop = 100 * (saved_accuracy - accuracy)
        entry = report["models"][kind]
        entry.update(
            accuracy=round(accuracy, 6),
            agreement_with_savedmodel=round(float(np.mean(predicted == saved_classes)), 6) if len(labels) else 0.0,
            drop_points=round(drop, 3),
            bytes=len(converted[kind]),
            ms_per_image=round(sum(milliseconds[kind]) / max(1, len(labels)), 3),
            input_dtype=model.input_dtype,
            passed=drop <= entry["max_drop_points"] + 1e-9,
        )
        if not entry["passed"]:
            entry["reason"] = (
                f"{kind} TFLite model: eval accuracy {accuracy:.4f} is {drop:.2f} points below the SavedModel's "
                f"{saved_accuracy:.4f} (limit export.{kind}_max_drop_points={entry['max_drop_points']})"
            )
            log.warning("TFLite %s: %s", kind, entry["reason"])
        folder = tflite_dir if entry["passed"] else rejected_dir
        tf.io.gfile.makedirs(folder)
        entry["file"] = os.path.join(folder, tflite_file(kind))
        with tf.io.gfile.GFile(entry["file"], "wb") as f:
            f.write(converted[kind])
        log.info(
            "TFLite %s: eval accuracy %.4f (SavedModel %.4f), %d KB, %.2f ms per image, %s",
            kind,
            accuracy,
            saved_accuracy,
            len(converted[kind]) // 1024,
            entry["ms_per_image"],
            "passed" if entry["passed"] else "failed",
        )
    with tf.io.gfile.GFile(os.path.join(tflite_dir, TFLITE_LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    dtypes = {tflite_file(kind): models[kind].input_dtype for kind in models}
    quantized = {
        tflite_file(kind): models[kind].input_quantization for kind in models if models[kind].input_quantization
    }
    limits_file = os.path.join(export_dir, EXTRA_DIR, SERVING_LIMITS_FILE)
    limit = None
    if tf.io.gfile.exists(limits_file):
        with tf.io.gfile.GFile(limits_file) as f:
            limit = json.load(f).get("max_image_pixels")
    with tf.io.gfile.GFile(os.path.join(tflite_dir, TFLITE_CLIENT_FILE), "w") as f:
        json.dump(client_contract(image_size, dtypes, quantized, limit), f, indent=1)
    with tf.io.gfile.GFile(os.path.join(tflite_dir, TFLITE_CHECK_FILE), "w") as f:
        json.dump(report, f, indent=1)
    return report
