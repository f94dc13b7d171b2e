"""`make bench`: Graft's pipeline against the classic Keras script, side by side, one run; then
the defaults on small data against scratch, the classic script and fastai's recipe.

A slim MobileNetV2 is pretrained here on one task (digits 0-4: ImageNet weights cannot be
downloaded), and its weights file goes to both sides for a second task (digits 5-9, images the
pretraining never saw). Graft's side is the real pipeline (`local_runner.py`: ExampleGen,
Transform, the Trainer reading tf.Examples through the Transform layer and TFX's data accessor,
Evaluator); the reference gets the very images of Graft's train and eval splits as class
folders. Same weights, image size, batch size, stages and epochs. Beside them: the fine-tune
step rate through the Trainer's input path as a ratio of the same model's step rate on one batch
held in memory (the limit the input pipeline should not lower).

Small data (`small_data_case`): 20 and 100 training images per class of digits 5-9 (the rest held
out as the eval split), the same pretrained weights. Graft with nothing but the data and the
weights (its defaults: the range test, minimum steps, no carve), Graft from scratch (weights none),
Graft's previous default written as stages (head 5 epochs at 1e-3, top 30 layers 3 epochs at
1e-4), the classic Keras script, and fastai's fine_tune written in Keras
(tests/benchmarks/reference_fastai.py). The last line is one JSON object.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import yaml  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tfx.components.trainer.fn_args_utils import DataAccessor  # noqa: E402
from tfx.components.util import tfxio_utils  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.contract import IMAGE_KEY, LABEL_KEY  # noqa: E402
from components.files import tfrecords  # noqa: E402
from components.trainer.input_pipeline import make_dataset  # noqa: E402
from components.trainer.model import apply_stage, build_model  # noqa: E402
from components.trainer.optimizers import compile_for_stage  # noqa: E402
from components.trainer.stages import Stage  # noqa: E402
from pipeline.config import load_config, trainer_settings  # noqa: E402
from pipeline.summary import run_outputs  # noqa: E402
from tests.benchmarks import reference_fastai, reference_keras  # noqa: E402
from tests.pretraining import pretrain_backbone, write_digit_folders  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_SIZE, ALPHA, BATCH, SEED = 64, 0.35, 32, 42
FROZEN_EPOCHS, FINE_TUNE_EPOCHS, FINE_TUNE_LAYERS = 10, 5, 30
STEP_RATE_STEPS, STEP_RATE_ROUNDS = 50, 5


def graft_config(work: str, data_dir: str, weights: str) -> dict:
    return {
        "pipeline_name": "graft-bench",
        "pipeline_root": os.path.join(work, "root"),
        "metadata_path": os.path.join(work, "metadata.db"),
        "serving_dir": os.path.join(work, "serving"),
        "data_dir": data_dir,
        "backbone": "mobilenet_v2",
        "backbone_kwargs": {"alpha": ALPHA},
        "weights": weights,
        "image_size": IMAGE_SIZE,
        "batch_size": BATCH,
        "dropout": 0.2,
        "stages": [
            {"name": "head", "epochs": FROZEN_EPOCHS, "trainable": "none", "learning_rate": 1e-3},
            {"name": "fine_tune", "epochs": FINE_TUNE_EPOCHS, "trainable": FINE_TUNE_LAYERS, "learning_rate": 1e-4},
        ],
        # The reference trains on the whole training split and validates nothing per epoch.
        "validation_percent": 0,
        "seed": SEED,
        "min_accuracy": 0.0,
    }


PREVIOUS_DEFAULT = [
    {"name": "head", "epochs": 5, "trainable": "none", "learning_rate": 1e-3},
    {"name": "fine_tune", "epochs": 3, "trainable": 30, "learning_rate": 1e-4},
]
FASTAI_EPOCHS = 10  # fine_tune(10): the unfrozen epochs, as many as Graft's default fine_tune_epochs


def small_data_case(work: str, weights: str, per_class: int) -> dict:
    """Eval accuracy of each side with `per_class` training images of each of digits 5-9."""
    digits = load_digits().target
    root = os.path.join(work, f"small_{per_class}")
    order = np.random.default_rng(SEED).permutation(len(digits))
    taken = {d: 0 for d in range(5, 10)}
    train, held_out = [], []
    for i in order:
        if digits[i] >= 5:
            (train if taken[digits[i]] < per_class else held_out).append(int(i))
            taken[digits[i]] += 1
    write_digit_folders(os.path.join(root, "train"), train, lambda d: f"digit_{d}")
    write_digit_folders(os.path.join(root, "eval"), held_out, lambda d: f"digit_{d}")
    results = {}
    sides = {"graft_default": weights, "graft_scratch": "none", "graft_previous_default": weights}
    for name, side_weights in sides.items():
        config = {
            "pipeline_name": f"small-{per_class}-{name}",
            "pipeline_root": os.path.join(root, name, "root"),
            "metadata_path": os.path.join(root, name, "metadata.db"),
            "serving_dir": os.path.join(root, name, "serving"),
            "data_dir": root,
            "backbone": "mobilenet_v2",
            "backbone_kwargs": {"alpha": ALPHA},
            "weights": side_weights,
            "image_size": IMAGE_SIZE,
            "min_accuracy": 0.0,
        }
        if name == "graft_previous_default":
            config.update(stages=PREVIOUS_DEFAULT, validation_percent=10)
        config_path = os.path.join(root, f"{name}.yaml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        summary, seconds = run_pipeline(config_path, os.path.join(root, f"{name}.json"))
        results[name] = round(summary["metrics"]["sparse_categorical_accuracy"], 4)
        if name == "graft_default":
            results["graft_default_chose"] = summary.get("training_choices")
        print(f"  {per_class} per class, {name}: {results[name]} ({seconds:.0f}s)", flush=True)
    train_dir, eval_dir = os.path.join(root, "train"), os.path.join(root, "eval")
    classic = reference_keras.run(
        train_dir,
        eval_dir,
        IMAGE_SIZE,
        BATCH,
        FROZEN_EPOCHS,
        FINE_TUNE_EPOCHS,
        FINE_TUNE_LAYERS,
        weights,
        alpha=ALPHA,
        seed=SEED,
    )
    results["classic_keras_script"] = round(classic["eval_accuracy"], 4)
    fastai = reference_fastai.run(
        train_dir, eval_dir, IMAGE_SIZE, BATCH, FASTAI_EPOCHS, weights, alpha=ALPHA, seed=SEED
    )
    results["fastai_style"] = round(fastai["eval_accuracy"], 4)
    best_reference = max(results["classic_keras_script"], results["fastai_style"])
    results.update(
        train_images=len(train),
        eval_images=len(held_out),
        default_minus_scratch_points=round(100 * (results["graft_default"] - results["graft_scratch"]), 1),
        default_minus_best_reference_points=round(100 * (results["graft_default"] - best_reference), 1),
        default_minus_previous_default_points=round(
            100 * (results["graft_default"] - results["graft_previous_default"]), 1
        ),
    )
    print(f"small data, {per_class} per class:", json.dumps(results), flush=True)
    return results


def run_pipeline(config_path: str, summary_path: str) -> tuple[dict, float]:
    started = time.time()
    subprocess.run(
        [sys.executable, "local_runner.py", "--config", config_path, "--summary-json", summary_path],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(summary_path) as f:
        return json.load(f), time.time() - started


def write_split_folders(examples_uri: str, root: str, class_names: list) -> dict:
    """Graft's train and eval splits (the tf.Examples ExampleGen wrote) back as class folders,
    so the reference sees exactly the same images in the same split."""
    counts = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
        features = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string), LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
        records = tfrecords(files)
        for index, record in enumerate(records):
            example = tf.io.parse_single_example(record, features)
            folder = os.path.join(root, split, class_names[int(example[LABEL_KEY])])
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{index:05d}.png"), "wb") as f:
                f.write(example[IMAGE_KEY].numpy())
            counts[split] = index + 1
    return counts


def fine_tune_step_rates(config, nodes: dict, train_count: int, num_classes: int) -> dict:
    """Steps per second of the fine-tune stage's model, fed (a) by the Trainer's own input path
    (the ExampleGen artifact read through TFX's data accessor, the Transform layer, the image
    cache, shuffle, batch) and (b) by one batch held in memory; both after a warm-up pass."""
    settings = trainer_settings(config)
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(nodes["ImageExampleGen"]["outputs"]["examples"][0])
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None,
        data_view_decode_fn=None,
    )
    import tensorflow_transform as tft

    transform = tft.TFTransformOutput(nodes["Transform"]["outputs"]["transform_graph"][0].uri)
    train = make_dataset(
        [os.path.join(examples.uri, "Split-train", "*")],
        accessor,
        transform,
        BATCH,
        IMAGE_KEY,
        IMAGE_SIZE * IMAGE_SIZE * 3 * 4,
        True,
        SEED,
        train_count,
        cache_bytes=settings.image_cache_mb << 20,
        shuffle_bytes=settings.shuffle_buffer_mb << 20,
    )
    one_batch = train.take(1).cache()
    model = build_model(settings, num_classes)
    stage = Stage("fine_tune", 1, FINE_TUNE_LAYERS, 1e-4)
    apply_stage(model, stage, settings.backbone_entry)
    compile_for_stage(model, stage)
    # Alternating timed windows of STEP_RATE_STEPS steps, the median of each side: on a shared
    # 2-core machine one window can be slowed by anything else running.
    iterators = {"input_path": iter(train.repeat()), "one_batch_in_memory": iter(one_batch.repeat())}
    samples = {name: [] for name in iterators}
    for round_ in range(STEP_RATE_ROUNDS + 1):  # round 0: warm-up (traces, fills the image cache)
        for name, iterator in iterators.items():
            started = time.time()
            model.fit(iterator, steps_per_epoch=STEP_RATE_STEPS, epochs=1, verbose=0)
            if round_:
                samples[name].append(STEP_RATE_STEPS / (time.time() - started))
    rates = {name: sorted(values)[len(values) // 2] for name, values in samples.items()}
    return rates


def stage_seconds(history: list, name: str) -> float:
    return [row for row in history if row["stage"] == name][-1]["stage_seconds"]


def main():
    work = tempfile.mkdtemp(prefix="graft-bench-")
    digits = load_digits().target
    weights = os.path.join(work, "pretrained_mobilenet_v2.h5")
    started = time.time()
    pretrained = pretrain_backbone(weights, [i for i, d in enumerate(digits) if d < 5], IMAGE_SIZE)
    print(
        f"pretrained MobileNetV2 (alpha {ALPHA}, {IMAGE_SIZE}px) on digits 0-4: held-out accuracy "
        f"{pretrained:.3f} ({time.time() - started:.0f}s); CPU: {os.cpu_count()} cores",
        flush=True,
    )
    data_dir = os.path.join(work, "digits_5_to_9")
    count = write_digit_folders(data_dir, [i for i, d in enumerate(digits) if d >= 5], lambda d: f"digit_{d}")

    config_path = os.path.join(work, "bench.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(graft_config(work, data_dir, weights), f)
    config = load_config(config_path, {})
    summary, pipeline_seconds = run_pipeline(config_path, os.path.join(work, "summary.json"))
    history = summary["training_history"]
    graft = {
        "frozen_seconds": stage_seconds(history, "head"),
        "fine_tune_seconds": stage_seconds(history, "fine_tune"),
        "eval_accuracy": summary["metrics"]["sparse_categorical_accuracy"],
        "pipeline_seconds": pipeline_seconds,
    }
    nodes = run_outputs(config.metadata_path, config.pipeline_name)
    class_names = summary["ingest"]["class_names"]
    split = write_split_folders(
        nodes["ImageExampleGen"]["outputs"]["examples"][0].uri, os.path.join(work, "ref"), class_names
    )
    print(f"task: digits 5-9, {count} images; Graft's split: {split['train']} train, {split['eval']} eval", flush=True)
    print("graft:    ", json.dumps({k: round(v, 3) for k, v in graft.items()}), flush=True)

    reference = reference_keras.run(
        os.path.join(work, "ref", "train"),
        os.path.join(work, "ref", "eval"),
        IMAGE_SIZE,
        BATCH,
        FROZEN_EPOCHS,
        FINE_TUNE_EPOCHS,
        FINE_TUNE_LAYERS,
        weights,
        alpha=ALPHA,
        seed=SEED,
    )
    print("reference:", json.dumps({k: round(v, 3) for k, v in reference.items()}), flush=True)

    keras.utils.set_random_seed(SEED)
    rates = fine_tune_step_rates(config, nodes, split["train"], len(class_names))
    print("fine-tune steps/s:", json.dumps({k: round(v, 2) for k, v in rates.items()}), flush=True)

    graft_training = graft["frozen_seconds"] + graft["fine_tune_seconds"]
    reference_training = reference["frozen_seconds"] + reference["fine_tune_seconds"]
    result = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU" if not tf.config.list_physical_devices("GPU") else "GPU",
        "pretrained_backbone_accuracy": round(pretrained, 4),
        "graft_eval_accuracy": round(graft["eval_accuracy"], 4),
        "reference_eval_accuracy": round(reference["eval_accuracy"], 4),
        "accuracy_difference_points": round(100 * (graft["eval_accuracy"] - reference["eval_accuracy"]), 2),
        "training_speedup": round(reference_training / graft_training, 2),
        "frozen_stage_speedup": round(reference["frozen_seconds"] / graft["frozen_seconds"], 2),
        "fine_tune_speedup": round(reference["fine_tune_seconds"] / graft["fine_tune_seconds"], 2),
        "fine_tune_step_rate_ratio_input_path_vs_in_memory": round(
            rates["input_path"] / rates["one_batch_in_memory"], 3
        ),
    }
    result["small_data"] = {str(n): small_data_case(work, weights, n) for n in (20, 100)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
