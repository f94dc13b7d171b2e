"""Trainer's run_fn: a thin adapter from TFX's FnArgs to Graft's model building and stages.

The input pipeline reads the raw examples and applies the Transform graph itself (Transform
does not materialise decoded images), caching decoded tensors in memory when they fit.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx_bsl.public import tfxio

from components import augmentation, backbones
from components.image_example_gen import CLASS_NAMES_FILE
from components.model import build_model
from components.serving_check import write_check_data
from components.signatures import make_signatures
from components.stages import Stage
from components.training import TrainingOptions, balanced_class_weights, train_stages
from components.transform_module import IMAGE_KEY, LABEL_KEY

log = logging.getLogger("graft.trainer")

CACHE_LIMIT_BYTES = 2 << 30  # decoded images are cached in memory below this size
HISTORY_FILE = "history.json"


def _count_records(file_patterns) -> int:
    files = [f for p in file_patterns for f in tf.io.gfile.glob(p)]
    return int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(0, lambda n, _: n + 1))


def make_dataset(file_patterns, data_accessor, tft_output, batch_size: int, image_size: int,
                 shuffle: bool, seed: int, augment=None, count: int | None = None) -> tf.data.Dataset:
    """(image, label) batches: raw examples -> Transform graph -> optional cache -> batches,
    with `augment` (training only) applied to each batch after the cache."""
    tft_layer = tft_output.transform_features_layer()
    dataset = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=max(batch_size, 64), shuffle=False, num_epochs=1),
        tft_output.raw_metadata.schema,
    )
    dataset = dataset.map(lambda raw: tft_layer({IMAGE_KEY: raw[IMAGE_KEY], LABEL_KEY: raw[LABEL_KEY]}),
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda t: (t[IMAGE_KEY], t[LABEL_KEY])).unbatch()
    count = _count_records(file_patterns) if count is None else count
    if count * image_size * image_size * 3 * 4 <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(min(count, 10_000), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def label_counts(file_patterns) -> dict:
    """{label: examples} over the given split, reading only the label feature."""
    files = [f for p in file_patterns for f in tf.io.gfile.glob(p)]
    labels = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda r: tf.io.parse_single_example(r, {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)})[LABEL_KEY][0])
    counts = {}
    for label in labels.as_numpy_iterator():
        counts[int(label)] = counts.get(int(label), 0) + 1
    return counts


def distribution_strategy(mixed_precision: str):
    """MirroredStrategy across GPUs when there are several; mixed_float16 (with loss scaling,
    which compile adds) on a GPU when `auto`, float32 on a CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    policy = "mixed_float16" if (mixed_precision == "auto" and gpus) else (
        "float32" if mixed_precision == "auto" else mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    log.info("devices: %d GPU(s); precision %s", len(gpus), policy)
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def read_class_names(train_files, settings: dict) -> list[str]:
    """Class names saved by Graft's ExampleGen next to the splits, else from the config."""
    examples_dir = os.path.dirname(os.path.dirname(train_files[0]))
    path = os.path.join(examples_dir, CLASS_NAMES_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    # TFRecord input: the pre-flight check has filled in class_names (from the config or the labels).
    return list(settings["class_names"])


def run_fn(fn_args):
    settings = fn_args.custom_config
    keras.utils.set_random_seed(settings["seed"])
    backbone = backbones.get(settings["backbone"])
    size = settings["image_size"]
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = read_class_names(fn_args.train_files, settings)
    batch = settings["batch_size"]
    augment = augmentation.build(settings.get("augmentation", "none"), seed=settings["seed"])
    counts = label_counts(fn_args.train_files)  # one pass over the labels serves counts and weights
    train_ds = make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, batch, size, True,
                            settings["seed"], augment, count=sum(counts.values()))
    eval_ds = make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, batch, size, False, settings["seed"])
    options = TrainingOptions(
        steps_per_epoch=max(1, math.ceil(sum(counts.values()) / batch)),
        batch_size=batch,
        label_smoothing=settings.get("label_smoothing", 0.0),
        early_stopping_patience=settings.get("early_stopping_patience", 0),
        class_weight=balanced_class_weights(counts) if settings.get("class_weights") == "balanced" else None,
        backbone=backbone,
        feature_caching=settings.get("feature_caching", True),
        augmented=augment is not None,
        discriminative_lr=settings.get("discriminative_lr", 0.0),
    )
    strategy = distribution_strategy(settings.get("mixed_precision", "auto"))
    with strategy.scope():
        model = build_model(backbone, len(class_names), size, settings["weights"], settings["dropout"],
                            settings["train_batchnorm"], settings["batchnorm_momentum"], settings["backbone_kwargs"])
        stages = [Stage(**s) for s in settings["stages"]]
        log.info("training %s (%s parameters) on %d classes at %d px", backbone.name,
                 f"{model.count_params():,}", len(class_names), size)
        tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs"),
                                                  write_graph=False)
        backup_dir = _backup_dir(fn_args)
        history = train_stages(model, stages, train_ds, eval_ds, callbacks=[tensorboard], backup_dir=backup_dir,
                               options=options)

    started = time.time()
    export_model(model, tft_output, class_names, fn_args.serving_model_dir)
    _save_serving_check(model, tft_output, fn_args.eval_files, fn_args.serving_model_dir)
    log.info("exported SavedModel in %.1fs", time.time() - started)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
        json.dump(history, f, indent=1)
    tf.io.gfile.rmtree(backup_dir)


def _backup_dir(fn_args) -> str:
    """Where an interrupted Trainer finds its progress when TFX runs it again: outside the
    per-execution artifact folders (a re-run is a new execution), keyed by everything that
    determines the training, so a changed configuration never resumes a stale run."""
    import hashlib

    key = json.dumps([fn_args.custom_config, sorted(fn_args.train_files), sorted(fn_args.eval_files),
                      fn_args.transform_output], sort_keys=True, default=str)
    trainer_root = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return os.path.join(trainer_root, "resume", hashlib.sha256(key.encode()).hexdigest()[:16])


def _save_serving_check(model, tft_output, eval_files, export_dir: str, count: int = 8) -> None:
    """The Trainer's own predictions on a few eval images, for the Pusher's serving check."""
    files = [f for p in eval_files for f in tf.io.gfile.glob(p)]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    images = [tf.train.Example.FromString(r.numpy()).features.feature[IMAGE_KEY].bytes_list.value[0]
              for r in records]
    transformed = tft_output.transform_features_layer()({IMAGE_KEY: tf.constant([[b] for b in images])})
    write_check_data(export_dir, images, model(transformed[IMAGE_KEY], training=False).numpy())


def export_model(model, tft_output, class_names, export_dir: str) -> None:
    """SavedModel with both serving signatures; class names also in assets.extra."""
    tft_layer = tft_output.transform_features_layer()
    model.tft_layer = tft_layer  # tracked, so the Transform graph's assets are saved with the model
    signatures = make_signatures(model, tft_layer, tft_output.raw_feature_spec()[IMAGE_KEY], class_names)
    # save_traces=False: only signatures are served; tracing every layer's call cost ~30 s.
    model.save(export_dir, save_format="tf", signatures=signatures, save_traces=False)
    extra = os.path.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, CLASS_NAMES_FILE), "w") as f:
        json.dump(list(class_names), f, ensure_ascii=False)
