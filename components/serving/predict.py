"""Batch prediction with a pushed model, through its raw-bytes signature (as clients call it),
or through its TFLite model with the client-side preprocessing a device does."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds: NFC, WordPiece)

from components.backbones import image_limits
from components.contract import (
    CLASS_NAMES_FILE,
    PROBABILITIES,
    RAW_INPUT,
    RAW_SIGNATURE,
    SERVING_CHECK_FILE,
    SERVING_LIMITS_FILE,
    TFLITE_DIR,
    tflite_file,
)
from components.example_gen import text_ingest
from components.example_gen.image_ingest import skip_reason
from components.serving import serving_dir
from components.serving.tflite_model import TFLiteClassifier, client_pixels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
TEXT_EXTENSIONS = (".txt",)


def expand_inputs(paths: Iterable[str], extensions: tuple = IMAGE_EXTENSIONS) -> list[str]:
    """Paths as given, with folders replaced by the files under them (at any depth) whose names
    end in `extensions` (sorted, hidden files and folders skipped)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [
                    os.path.join(dirpath, n)
                    for n in sorted(filenames)
                    if n.lower().endswith(extensions) and not skip_reason(n)
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


DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # a version exported before limits were recorded: GraftConfig's default


def max_image_pixels(model_dir: str) -> int:
    """The version's limit (recorded at training), which its graph applies to every request."""
    limits = serving_dir.read_extra_json(model_dir, SERVING_LIMITS_FILE) or {}
    return int(limits.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS))


def model_kind(model_dir: str) -> str:
    """image | text: what the version classifies (recorded by the Trainer in its check data)."""
    return (serving_dir.read_extra_json(model_dir, SERVING_CHECK_FILE) or {}).get("kind", "image")


def _savedmodel_scorer(model_dir: str, kind: str):
    """raw inputs (image bytes or UTF-8 texts) -> probabilities [n, classes], through the raw signature."""
    predict = tf.saved_model.load(model_dir).signatures[RAW_SIGNATURE[kind]]
    return lambda raw: predict(**{RAW_INPUT[kind]: tf.constant(raw)})[PROBABILITIES].numpy()


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
    limit = max_image_pixels(model_dir)  # as the device applies it (client.json), before decoding
    return lambda images: np.stack([model.probabilities(client_pixels(image, size, limit)) for image in images])


def image_items(files: list[str], max_pixels: int) -> Iterator[tuple[str, bytes | None, str]]:
    """(path, encoded bytes, "") per file, or (path, None, why) when serving would refuse it (by its
    header: not JPEG, PNG, GIF or BMP, or more than `max_pixels` pixels) or could not decode it.
    Refused here, one file cannot fail the batch it would have been sent in."""
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
            known, width, height = (int(v) for v in image_limits.header_size(tf.constant(data)))
            if not known:
                yield path, None, f"refused: not an image serving decodes ({image_limits.FORMATS})"
                continue
            if width * height > max_pixels:
                yield (
                    path,
                    None,
                    f"refused: {width}x{height} pixels by its header, over the model's max_image_pixels {max_pixels:,}",
                )
                continue
            tf.io.decode_image(data, channels=3, expand_animations=False)  # the serving decoder
            yield path, data, ""
        except (OSError, tf.errors.InvalidArgumentError) as err:
            yield path, None, str(err).splitlines()[0][:200] if str(err) else type(err).__name__


EMPTY_TEXT = "empty text: nothing to classify"


def text_items(inputs: list[str], text_column: str = "text", stdin=None) -> Iterator[tuple[str, bytes | None, str]]:
    """(where, UTF-8 text, "") per text, or (where, None, why): a .txt file is one text (a folder:
    every .txt file under it, as in the training layout); a CSV/TSV/JSON Lines table gives one
    per row (its `text_column`); "-" reads one text per line from `stdin`. Empty texts are
    refused. Texts are passed whole: the model applies its own max_text_chars rule."""
    for path in expand_inputs(inputs, TEXT_EXTENSIONS):
        if path == "-":
            for number, line in enumerate(stdin or sys.stdin, 1):
                text = line.rstrip("\n")
                yield (
                    f"stdin:{number}",
                    text.encode("utf-8") if text.strip() else None,
                    "" if text.strip() else EMPTY_TEXT,
                )
            continue
        kind = text_ingest.table_kind(path)
        try:
            if kind is None:
                with open(path, "rb") as f:
                    data = f.read()
                data.decode("utf-8")  # a file that is not UTF-8 is reported, not sent
                yield path, data if data.strip() else None, "" if data.strip() else EMPTY_TEXT
                continue
            rules = text_ingest.TextRules(text_column=text_column, label_required=False, max_text_chars=sys.maxsize)
            listing = text_ingest.read_table(path, rules)
        except (OSError, UnicodeDecodeError, text_ingest.TextInputError) as err:
            yield path, None, str(err).splitlines()[0][:200]
            continue
        for record in listing.accepted:
            yield record.source, record.text.encode("utf-8"), ""
        for record in listing.quarantined + listing.skipped:
            yield record["path"], None, record["reason"]


def predict_files(
    model_dir: str, files: list[str], batch_size: int = 64, top_k: int = 3, progress=None, tflite: str | None = None
) -> Iterator[dict]:
    """One result per image file: path, class name, probability, top-k; unreadable or
    undecodable files yield an `error` instead (the batch goes on). `tflite` (float | int8): the
    version's TFLite model answers instead of the SavedModel."""
    score = _tflite_scorer(model_dir, tflite) if tflite else _savedmodel_scorer(model_dir, "image")
    items = image_items(files, max_image_pixels(model_dir))
    return predict_items(model_dir, items, score, batch_size, top_k, progress)


def predict_texts(
    model_dir: str, inputs: list[str], batch_size: int = 64, top_k: int = 3, progress=None, text_column: str = "text"
) -> Iterator[dict]:
    """One result per text (see text_items), through the version's serving_text signature."""
    score = _savedmodel_scorer(model_dir, "text")
    return predict_items(model_dir, text_items(inputs, text_column), score, batch_size, top_k, progress)


def predict_items(model_dir: str, items, score, batch_size: int, top_k: int, progress=None) -> Iterator[dict]:
    names = serving_dir.read_extra_json(model_dir, CLASS_NAMES_FILE)
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield from _score_batch(batch, score, names, top_k)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        yield from _score_batch(batch, score, names, top_k)
        if progress:
            progress(len(batch))


def _score_batch(batch: list, score, names: list, top_k: int) -> Iterator[dict]:
    good = [raw for _, raw, _ in batch if raw is not None]
    probabilities = iter(score(good)) if good else iter(())
    for where, raw, error in batch:
        if raw is None:
            yield {"path": where, "error": error}
            continue
        scores = next(probabilities)
        order = np.argsort(-scores)[:top_k]
        yield {
            "path": where,
            "class_name": names[order[0]],
            "probability": round(float(scores[order[0]]), 6),
            "top_k": [{"class_name": names[i], "probability": round(float(scores[i]), 6)} for i in order],
        }
