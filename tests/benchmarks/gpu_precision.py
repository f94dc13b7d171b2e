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

from components import backbones  # noqa: E402
from components.model import build_model, compile_for_stage  # noqa: E402
from components.stages import Stage  # noqa: E402

SIZE, BATCH, STEPS, WARMUP = 224, 64, 60, 10


def images_per_second(policy: str) -> float:
    keras.mixed_precision.set_global_policy(policy)
    model = build_model(backbones.get("mobilenet_v2"), 10, SIZE, "none", 0.2)
    stage = Stage("all", 1, "all", 1e-3)
    from components.model import apply_stage

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
    result = {"gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
              "model": f"MobileNetV2 {SIZE}px, batch {BATCH}, all layers training"}
    result["float32_images_per_s"] = round(images_per_second("float32"), 1)
    result["mixed_float16_images_per_s"] = round(images_per_second("mixed_float16"), 1)
    result["mixed_over_float32"] = round(result["mixed_float16_images_per_s"] / result["float32_images_per_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
