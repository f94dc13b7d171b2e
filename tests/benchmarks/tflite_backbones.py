"""Which mobile backbones convert to TFLite with built-in ops, float and int8, and their sizes.

    python -m tests.benchmarks.tflite_backbones [NAME ...]

Random weights (the ops, not the numbers, decide conversion), 96 px, 3 classes; each model is
exported with the Trainer's pixels signature and converted by the Trainer's `convert`.
"""

import json
import os
import sys
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.backbones.preprocessing import scale_pixels  # noqa: E402
from components.contract import PIXELS_INPUT, PIXELS_SIGNATURE, PROBABILITIES  # noqa: E402
from components.trainer.model import build_model  # noqa: E402
from components.trainer.tflite_export import TFLiteConversionError, convert  # noqa: E402
from pipeline.config import GraftConfig, trainer_settings  # noqa: E402

MOBILE = ["mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "nasnet_mobile"]
SIZE = 96


def survey(name: str, work: str) -> dict:
    settings = trainer_settings(GraftConfig(data_dir=".", backbone=name, weights="none", image_size=SIZE))
    model = build_model(settings, 3)
    mode = settings.backbone_entry.preprocess

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name=PIXELS_INPUT)])
    def serve(pixels):
        return {PROBABILITIES: model(scale_pixels(pixels, mode), training=False)}

    path = os.path.join(work, name)
    model.save(path, save_format="tf", signatures={PIXELS_SIGNATURE: serve}, save_traces=False)
    representative = [np.random.default_rng(i).uniform(0, 255, (SIZE, SIZE, 3)).astype("float32") for i in range(8)]
    row = {"backbone": name}
    for kind in ("float", "int8"):
        started = time.time()
        try:
            row[f"{kind}_kb"] = len(convert(path, kind, representative)) // 1024
        except TFLiteConversionError as err:
            row[f"{kind}_kb"] = None
            row[f"{kind}_error"] = str(err)
        row[f"{kind}_seconds"] = round(time.time() - started, 1)
    print(json.dumps(row), flush=True)
    return row


def main(names) -> int:
    work = tempfile.mkdtemp(prefix="graft-tflite-")
    rows = [survey(name, work) for name in names or MOBILE]
    print(
        json.dumps(
            {
                "converted_float": [r["backbone"] for r in rows if r["float_kb"]],
                "converted_int8": [r["backbone"] for r in rows if r["int8_kb"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
