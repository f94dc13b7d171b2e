"""Batch prediction with a pushed model, through its raw-bytes signature (as clients call it),
or through its TFLite model with the client-side preprocessing a device does."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from components.contract import (
    CLASS_NAMES_FILE,
    IMAGE_BYTES_INPUT,
    IMAGE_BYTES_SIGNATURE,
    PROBABILITIES,
    TFLITE_DIR,
    tflite_file,
)
from components.example_gen.image_ingest import skip_reason
from components.serving import serving_dir
from components.serving.tflite_model import TFLiteClassifier, client_pixels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """Files as given, plus image files found under given folders (sorted, hidden skipped)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [
                    os.path.join(dirpath, n)
                    for n in sorted(filenames)
                    if n.lower().endswith(IMAGE_EXTENSIONS) and not skip_reason(n)
                ]
        else:
            found.append(path)
    return found


def resolve_model_dir(serving: str, version: int | None = None) -> str:
    if version is None:
        newest = serving_dir.newest(serving)
        if newest is None:
            raise FileNotFoundError(f"{serving}: no model version to predict with")
        return newest
    path = os.path.join(serving, str(version))
    if version not in serving_dir.versions(serving):
        raise FileNotFoundError(f"{serving}: no version {version} (versions: {serving_dir.versions(serving)})")
    return path


def _savedmodel_scorer(model_dir: str):
    """images (bytes) -> probabilities [n, classes], through the raw-bytes signature."""
    predict = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]
    return lambda images: predict(**{IMAGE_BYTES_INPUT: tf.constant(images)})[PROBABILITIES].numpy()


def _tflite_scorer(model_dir: str, kind: str):
    """images (bytes) -> probabilities, through the version's TFLite model with the documented
    client-side preprocessing, one image at a time: what a device would answer."""
    path = os.path.join(model_dir, TFLITE_DIR, tflite_file(kind))
    if not tf.io.gfile.exists(path):
        there = (
            tf.io.gfile.listdir(os.path.join(model_dir, TFLITE_DIR))
            if tf.io.gfile.isdir(os.path.join(model_dir, TFLITE_DIR))
            else []
        )
        found = sorted(n for n in there if n.endswith(".tflite"))
        raise FileNotFoundError(
            f"{model_dir}: no {kind} TFLite model ({tflite_file(kind)}); this version has "
            + (", ".join(found) if found else "none (export.tflite was off, or its check failed)")
        )
    with tf.io.gfile.GFile(path, "rb") as f:
        model = TFLiteClassifier(content=f.read())
    size = model.interpreter.get_input_details()[0]["shape"][1]
    return lambda images: np.stack([model.probabilities(client_pixels(image, size)) for image in images])


def predict_files(
    model_dir: str, files: list[str], batch_size: int = 64, top_k: int = 3, progress=None, tflite: str | None = None
) -> Iterator[dict]:
    """One result per file: path, class name, probability, top-k; unreadable or undecodable
    files yield an `error` instead (the batch goes on). `tflite` (float | int8): the version's
    TFLite model answers instead of the SavedModel."""
    score = _tflite_scorer(model_dir, tflite) if tflite else _savedmodel_scorer(model_dir)
    names = serving_dir.read_extra_json(model_dir, CLASS_NAMES_FILE)
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        images, ok, errors = [], [], {}
        for path in batch:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                tf.io.decode_image(data, channels=3, expand_animations=False)  # the serving decoder
                images.append(data)
                ok.append(path)
            except (OSError, tf.errors.InvalidArgumentError) as err:
                errors[path] = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        probabilities = score(images) if images else None
        row = {p: i for i, p in enumerate(ok)}
        for path in batch:
            if path in errors:
                yield {"path": path, "error": errors[path]}
                continue
            scores = probabilities[row[path]]
            order = np.argsort(-scores)[:top_k]
            yield {
                "path": path,
                "class_name": names[order[0]],
                "probability": round(float(scores[order[0]]), 6),
                "top_k": [{"class_name": names[i], "probability": round(float(scores[i]), 6)} for i in order],
            }
        if progress:
            progress(len(batch))
