"""Images/s of the same model trained in float32 and in mixed precision (mixed_float16 with
loss scaling, float32 output), for a machine with a GPU. Synthetic batches, so the input
pipeline is not what is measured. Prints one JSON line.

    TF_USE_LEGACY_KERAS=1 python -m tests.benchmarks.gpu_precision
"""

import json
import os
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from components.trainer.model import apply_stage, build_model  # noqa: E402
from components.trainer.optimizers import compile_for_stage  # noqa: E402
from components.trainer.stages import Stage  # noqa: E402
from pipeline.config import GraftConfig, trainer_settings  # noqa: E402

SIZE, BATCH, STEPS, WARMUP = 224, 64, 60, 10


def images_per_second(policy: str) -> float:
    keras.mixed_precision.set_global_policy(policy)
    model = build_model(trainer_settings(GraftConfig(data_dir=".", weights="none", image_size=SIZE)), 10)
    stage = Stage("all", 1, "all", 1e-3)
    apply_stage(model, stage)
    compile_for_stage(model, stage)
    images = tf.random.uniform([BATCH, SIZE, SIZE, 3], -1, 1)
    labels = tf.random.uniform([BATCH], 0, 10, tf.int32)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(data, steps_per_epoch=WARMUP, epochs=1, verbose=0)  # tracing and autotuning
    started = time.time()
    model.fit(data, steps_per_epoch=STEPS, epochs=1, verbose=0)
    return BATCH * STEPS / (time.time() - started)


def main():
    gpus = tf.config.list_physical_devices("GPU")
    result = {
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
        "model": f"MobileNetV2 {SIZE}px, batch {BATCH}, all layers training",
    }
    result["float32_images_per_s"] = round(images_per_second("float32"), 1)
    result["mixed_float16_images_per_s"] = round(images_per_second("mixed_float16"), 1)
    result["mixed_over_float32"] = round(result["mixed_float16_images_per_s"] / result["float32_images_per_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
