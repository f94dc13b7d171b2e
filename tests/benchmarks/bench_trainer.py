"""`make bench`: Graft's Trainer code against the classic Keras script, side by side, one run.

Same data (scikit-learn's digits as PNG folders), backbone (MobileNetV2 from one weights file
made here), image size, batch size and epochs. Graft's side is the Trainer's own code path:
encoded bytes -> preprocess_image_bytes (the Transform graph) -> cached tensors -> the stage
runner (frozen stage on cached features, then fine-tuning). Prints ratios; the last line is
one JSON object.
"""

import json
import os
import sys
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from components.backbones.preprocessing import preprocess_image_bytes  # noqa: E402
from components.trainer.model import build_model  # noqa: E402
from components.trainer.stages import Stage  # noqa: E402
from components.trainer.training import TrainingOptions, train_stages  # noqa: E402
from pipeline.config import GraftConfig, trainer_settings  # noqa: E402
from pipeline.sample_data import write_digits  # noqa: E402
from tests.benchmarks import reference_keras  # noqa: E402

IMAGE_SIZE, BATCH, FROZEN_EPOCHS, FINE_TUNE_EPOCHS, FINE_TUNE_LAYERS, SEED = 96, 32, 5, 2, 30, 42


def graft_datasets(data_dir):
    """The Trainer's input pipeline: the same files and 80/20 split as the reference."""
    reference_split = keras.utils.image_dataset_from_directory(
        data_dir, validation_split=0.2, subset="training", seed=SEED, image_size=(8, 8), batch_size=None
    )
    train_files = set(reference_split.file_paths)
    classes = sorted(os.listdir(data_dir))
    rows = [
        (os.path.join(data_dir, c, f), i)
        for i, c in enumerate(classes)
        for f in sorted(os.listdir(os.path.join(data_dir, c)))
    ]

    def dataset(selected, shuffle):
        paths = [p for p, _ in selected]
        raw = tf.data.Dataset.from_tensor_slices(
            ([open(p, "rb").read() for p in paths], [label for _, label in selected])
        )
        images = (
            raw.batch(256)
            .map(lambda b, y: (preprocess_image_bytes(b, "mobilenet_v2", IMAGE_SIZE), y))
            .unbatch()
            .cache()
        )
        if shuffle:
            images = images.shuffle(len(paths), seed=SEED)
        return images.batch(BATCH).prefetch(tf.data.AUTOTUNE)

    train = [r for r in rows if r[0] in train_files]
    evaluation = [r for r in rows if r[0] not in train_files]
    return dataset(train, True), dataset(evaluation, False), len(classes), len(train)


def run_graft(data_dir, weights_file):
    keras.utils.set_random_seed(SEED)
    train, evaluation, classes, count = graft_datasets(data_dir)
    settings = trainer_settings(
        GraftConfig(
            data_dir=data_dir,
            backbone="mobilenet_v2",
            weights=weights_file,
            image_size=IMAGE_SIZE,
            dropout=0.2,
            batch_size=BATCH,
        )
    )
    model = build_model(settings, classes)
    timings = {}
    stages = [Stage("head", FROZEN_EPOCHS, "none", 1e-3), Stage("fine_tune", FINE_TUNE_EPOCHS, FINE_TUNE_LAYERS, 1e-4)]
    started = time.time()
    history = train_stages(model, stages[:1], train, evaluation, options=TrainingOptions(settings))
    timings["frozen_seconds"] = time.time() - started
    started = time.time()
    history += train_stages(model, stages[1:], train, evaluation, options=TrainingOptions(settings))
    timings["fine_tune_seconds"] = time.time() - started
    return {**timings, "train_images": count, "eval_accuracy": history[-1]["val_accuracy"]}


def main():
    work = tempfile.mkdtemp(prefix="graft-bench-")
    data_dir = write_digits(os.path.join(work, "digits"))
    keras.utils.set_random_seed(SEED)
    weights_file = os.path.join(work, "mobilenet_v2_init.h5")
    keras.applications.MobileNetV2(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), include_top=False, weights=None
    ).save_weights(weights_file)
    print(
        f"data: {data_dir} (10 classes), MobileNetV2 {IMAGE_SIZE}px, batch {BATCH}, "
        f"{FROZEN_EPOCHS} frozen + {FINE_TUNE_EPOCHS} fine-tune epochs, CPU: {os.cpu_count()} cores",
        flush=True,
    )
    reference = reference_keras.run(
        data_dir, IMAGE_SIZE, BATCH, FROZEN_EPOCHS, FINE_TUNE_EPOCHS, FINE_TUNE_LAYERS, weights_file, seed=SEED
    )
    print("reference:", json.dumps({k: round(v, 3) for k, v in reference.items()}), flush=True)
    graft = run_graft(data_dir, weights_file)
    print("graft:    ", json.dumps({k: round(v, 3) for k, v in graft.items()}), flush=True)

    def throughput(r):
        epochs = FROZEN_EPOCHS + FINE_TUNE_EPOCHS
        return r["train_images"] * epochs / (r["frozen_seconds"] + r["fine_tune_seconds"])

    result = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU" if not tf.config.list_physical_devices("GPU") else "GPU",
        "training_throughput_ratio": round(throughput(graft) / throughput(reference), 2),
        "fine_tune_throughput_ratio": round(reference["fine_tune_seconds"] / graft["fine_tune_seconds"], 2),
        "frozen_stage_speedup": round(reference["frozen_seconds"] / graft["frozen_seconds"], 2),
        "graft_eval_accuracy": round(graft["eval_accuracy"], 4),
        "reference_eval_accuracy": round(reference["eval_accuracy"], 4),
        "accuracy_difference_points": round(100 * (graft["eval_accuracy"] - reference["eval_accuracy"]), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
