"""The serving check: a pushed model, loaded in a fresh process, must answer through both
signatures exactly as the Trainer's own model did on the same eval images.

The Trainer stores those images and its predictions in the SavedModel's assets.extra
(ignored by TF Serving); the Pusher runs this module on the staged copy before the version
becomes visible, so a model that does not load or answers differently is never served.

    python -m components.serving.check MODEL_DIR
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds: NFC, WordPiece)

from components import files
from components.contract import (
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    EXTRA_DIR,
    PROBABILITIES,
    RAW_FEATURE,
    RAW_INPUT,
    RAW_SIGNATURE,
    SERVING_CHECK_FILE,
)
from components.serving import serving_dir

TOLERANCE = 1e-4


class ServingCheckError(RuntimeError):
    pass


def write_check_data(export_dir: str, raw: list, probabilities, kind: str = "image") -> None:
    """`raw`: the eval examples' raw feature (image bytes or UTF-8 text) the Trainer predicted."""
    extra = os.path.join(export_dir, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, SERVING_CHECK_FILE), "w") as f:
        json.dump(
            {
                "kind": kind,
                "images_b64": [base64.b64encode(b).decode() for b in raw],
                "probabilities": [[float(p) for p in row] for row in probabilities],
            },
            f,
        )


def _example(feature: str, value: bytes) -> bytes:
    return tf.train.Example(
        features=tf.train.Features(feature={feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))})
    ).SerializeToString()


def check_in_this_process(model_dir: str) -> dict:
    """Loads `model_dir`, calls both signatures, compares with the Trainer's predictions."""
    data = serving_dir.read_extra_json(model_dir, SERVING_CHECK_FILE)
    if data is None:
        raise ServingCheckError(f"{model_dir}: no {EXTRA_DIR}/{SERVING_CHECK_FILE} (not exported by Graft's Trainer)")
    kind = data.get("kind", "image")
    images = [base64.b64decode(b) for b in data["images_b64"]]
    expected = np.array(data["probabilities"])
    files.register(model_dir)
    model = tf.saved_model.load(model_dir)
    by_bytes = model.signatures[RAW_SIGNATURE[kind]](**{RAW_INPUT[kind]: tf.constant(images)})
    examples = [_example(RAW_FEATURE[kind], b) for b in images]
    by_example = model.signatures[EXAMPLES_SIGNATURE](**{EXAMPLES_INPUT: tf.constant(examples)})
    by_bytes, by_example = by_bytes[PROBABILITIES].numpy(), by_example[PROBABILITIES].numpy()
    worst = float(max(np.abs(by_bytes - expected).max(), np.abs(by_example - expected).max()))
    return {"images": len(images), "max_abs_difference": worst, "ok": worst <= TOLERANCE}


def check_in_fresh_process(model_dir: str) -> dict:
    """Runs the check in a new Python process, as a model server would load the model."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", __name__, model_dir], capture_output=True, text=True, env=env, timeout=600
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode not in (0, 1) or not lines:
        raise ServingCheckError(
            f"the model in {model_dir} failed to load and serve in a fresh process:\n" + result.stderr[-2000:]
        )
    outcome = json.loads(lines[-1])
    if not outcome["ok"]:
        raise ServingCheckError(
            f"the served model answers differently from the Trainer's model: max difference "
            f"{outcome['max_abs_difference']:.2e} > {TOLERANCE} on {outcome['images']} eval images"
        )
    return outcome


if __name__ == "__main__":  # the package's __init__ has set Keras 2 before TensorFlow loaded
    outcome = check_in_this_process(sys.argv[1])
    print(json.dumps(outcome))
    files.exit_process(0 if outcome["ok"] else 1)
