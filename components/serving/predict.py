"""Batch prediction with a pushed model, through its raw-bytes signature (as clients call it)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from components.contract import (
    CLASS_NAME,
    CLASS_NAMES_FILE,
    IMAGE_BYTES_INPUT,
    IMAGE_BYTES_SIGNATURE,
    PROBABILITIES,
)
from components.example_gen.image_ingest import skip_reason
from components.serving import serving_dir

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


def predict_files(
    model_dir: str, files: list[str], batch_size: int = 64, top_k: int = 3, progress=None
) -> Iterator[dict]:
    """One result per file: path, class name, probability, top-k; unreadable or undecodable
    files yield an `error` instead (the batch goes on)."""
    model = tf.saved_model.load(model_dir)
    predict = model.signatures[IMAGE_BYTES_SIGNATURE]
    names = None
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
        outputs = predict(**{IMAGE_BYTES_INPUT: tf.constant(images)}) if images else None
        if outputs is not None and names is None:
            names = serving_dir.read_extra_json(model_dir, CLASS_NAMES_FILE)
        row = {p: i for i, p in enumerate(ok)}
        for path in batch:
            if path in errors:
                yield {"path": path, "error": errors[path]}
                continue
            probabilities = outputs[PROBABILITIES].numpy()[row[path]]
            order = np.argsort(-probabilities)[:top_k]
            yield {
                "path": path,
                "class_name": outputs[CLASS_NAME].numpy()[row[path]].decode("utf-8"),
                "probability": round(float(probabilities[order[0]]), 6),
                "top_k": [
                    {"class_name": names[i] if names else str(i), "probability": round(float(probabilities[i]), 6)}
                    for i in order
                ],
            }
        if progress:
            progress(len(batch))
