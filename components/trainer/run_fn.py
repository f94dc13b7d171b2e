"""Trainer's run_fn: a thin adapter from TFX's FnArgs to Graft's model building and stages."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Optional

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds: NFC, WordPiece)
import tensorflow_transform as tft
import tf_keras as keras

from components.backbones import registry
from components.contract import CHOICES_FILE, CLASS_NAMES_FILE, HISTORY_FILE, RAW_FEATURE
from components.memory import release_freed_memory
from components.trainer import augmentation, devices, tflite_export, warm_start
from components.trainer.export import export_model, float32_twin, save_serving_check
from components.trainer.input_pipeline import (
    SMALL_DATA,
    bucket_label_counts,
    carve,
    make_dataset,
    split_counts,
    validation_percent_for,
)
from components.trainer.model import architecture_only, build_model, resolve_head_l2
from components.trainer.settings import TrainerSettings
from components.trainer.training import TrainingOptions, balanced_class_weights, train_stages
from components.tuner import search_space

log = logging.getLogger("graft.trainer")


def distribution_strategy(mixed_precision: str):
    """MirroredStrategy across GPUs when there are several; mixed_float16 (with loss scaling,
    which compile adds) on a GPU when `auto`, float32 on a CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    policy = (
        "mixed_float16"
        if (mixed_precision == "auto" and gpus)
        else ("float32" if mixed_precision == "auto" else mixed_precision)
    )
    keras.mixed_precision.set_global_policy(policy)
    log.info("devices: %d GPU(s); precision %s", len(gpus), policy)
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def example_bytes(settings: TrainerSettings) -> int:
    """One transformed example in memory: float32 pixels, int64 token ids, or a text (a guess:
    its length is known only per text)."""
    entry = settings.backbone_entry
    if entry.kind == "image":
        return settings.image_size * settings.image_size * 3 * 4
    if entry.name == registry.TEXT_TFIDF.name:
        return (settings.vocab_size + 1) * 4
    return settings.max_tokens * 8 if entry.name != registry.HUB_TEXT.name else 1024


def read_class_names(train_files, settings: TrainerSettings) -> list[str]:
    """Class names saved by Graft's ExampleGen next to the splits, else from the config. A span
    window's spans must share them: a label is an index into that list."""
    found = {}
    for pattern in train_files:
        path = os.path.join(os.path.dirname(os.path.dirname(pattern)), CLASS_NAMES_FILE)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                found[path] = json.load(f)
    if not found:
        # TFRecord input: the pre-flight check has filled in class_names (from the config or the labels).
        return list(settings.class_names)
    (first, names), *others = found.items()
    for path, other in others:
        if other != names:
            raise ValueError(
                f"span_window: the spans' classes differ ({first}: {names}; {path}: {other}); a window "
                "trains on spans with the same classes: after a class change, set span_window: 1 until as many "
                "spans of the new classes have been trained as the window holds"
            )
    return names


@dataclass
class Prepared:
    """What training reads, made once from the Trainer's (or the Tuner's) inputs: the class
    names, the training and validation batches, the options (the settings as resolved for
    this data), and the served version whose weights training starts from (init_from serving;
    None: the backbone's), so the Tuner's trials start where the Trainer will."""

    class_names: list
    tft_output: tft.TFTransformOutput
    train_ds: tf.data.Dataset
    validation_ds: Optional[tf.data.Dataset]
    options: TrainingOptions
    start_from: Optional[str] = None


def prepare(fn_args, settings: TrainerSettings) -> Prepared:
    """Datasets and training options for `settings` on fn_args' splits (Trainer and Tuner)."""
    keras.utils.set_random_seed(settings.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    class_names = read_class_names(fn_args.train_files, settings)
    augment = augmentation.build(settings.augmentation, seed=settings.seed)
    # Model selection (early stopping, best weights) and the per-epoch validation curves use a
    # part carved from the training split: the eval split stays the Evaluator's, unseen.
    batch = settings.batch_size
    kind = settings.backbone_entry.kind
    buckets = bucket_label_counts(fn_args.train_files, RAW_FEATURE[kind])  # one pass over the labels
    percent = validation_percent_for(settings.validation_percent, sum(buckets.values()))
    counts, validation_counts = split_counts(buckets, percent)
    train_count, validation_count = sum(counts.values()), sum(validation_counts.values())
    train_part, validation_part = (carve(percent, v, RAW_FEATURE[kind]) for v in (False, True))
    if settings.validation_percent is None and not percent:
        log.info(
            "validation: none carved (%d training examples, fewer than %d): model selection on so few is noise; "
            "every example trains, for the stages' fixed budgets%s",
            train_count,
            SMALL_DATA,
            " (early stopping off)" if settings.early_stopping_patience else "",
        )
    settings = replace(
        resolve_head_l2(settings, train_count),
        validation_percent=percent,
        early_stopping_patience=settings.early_stopping_patience if percent else 0,
    )

    def dataset(part, count: int, training: bool):
        return make_dataset(
            fn_args.train_files,
            fn_args.data_accessor,
            tft_output,
            batch,
            RAW_FEATURE[kind],
            example_bytes(settings),
            training,
            settings.seed,
            count,
            augment if training else None,
            keep=part,
            cache_bytes=settings.image_cache_mb << 20,
            shuffle_bytes=settings.shuffle_buffer_mb << 20,
        )

    log.info(
        "training on %d examples; validation (model selection, curves) on %d carved from the training split; "
        "the eval split is left to the Evaluator",
        train_count,
        validation_count,
    )
    options = TrainingOptions(
        settings=settings,
        steps_per_epoch=max(1, math.ceil(train_count / batch)),
        class_weight=balanced_class_weights(counts) if settings.class_weights == "balanced" else None,
        augmented=augment is not None,
        # BatchNorm statistics are re-estimated on what inference sees: un-augmented images.
        # In order and plain when augmented (BatchNorm), or when the images outrun the image
        # cache: a frozen stage's feature pass then skips the shuffle buffer (1 GB at 64,000 images).
        plain_train_ds=(
            dataset(train_part, train_count, training=False)
            if augment is not None or train_count * example_bytes(settings) > settings.image_cache_mb << 20
            else None
        ),
        choices={
            "training_examples": train_count,
            "validation_percent": percent,
            "validation_examples": validation_count,
            "head_l2": settings.head_l2,
        },
    )
    return Prepared(
        class_names,
        tft_output,
        dataset(train_part, train_count, training=True),
        dataset(validation_part, validation_count, training=False) if validation_count else None,
        options,
        start_from=warm_start.serving_version(settings),
    )


def with_values(prepared: Prepared, values: dict) -> Prepared:
    """`prepared` training with a Tuner trial's hyperparameter values."""
    settings = search_space.apply(prepared.options.settings, values)
    choices = {**prepared.options.choices, "head_l2": settings.head_l2}  # what trains, tuned
    return replace(prepared, options=replace(prepared.options, settings=settings, choices=choices))


def fit(prepared: Prepared, callbacks=(), backup_dir: Optional[str] = None) -> tuple[keras.Model, list]:
    """The model built and trained through its stages; returns it with the per-epoch history."""
    settings, start_from = prepared.options.settings, prepared.start_from
    strategy = distribution_strategy(settings.mixed_precision)
    with strategy.scope():
        model = build_model(architecture_only(settings) if start_from else settings, len(prepared.class_names))
        if start_from:
            warm_start.load_serving_weights(model, start_from, prepared.class_names, settings)
        log.info(
            "training %s (%s parameters) on %d classes%s",
            settings.backbone,
            f"{model.count_params():,}",
            len(prepared.class_names),
            f" at {settings.image_size} px" if settings.backbone_entry.kind == "image" else "",
        )
        history = train_stages(
            model,
            list(settings.stages),
            prepared.train_ds,
            prepared.validation_ds,
            prepared.options,
            callbacks=list(callbacks),
            backup_dir=backup_dir,
        )
    return model, history


def run_fn(fn_args):
    release_freed_memory()  # what ExampleGen, StatisticsGen and Transform freed in this process
    settings = TrainerSettings.from_dict(fn_args.custom_config)
    fallback = devices.check(devices.expected_gpus(), settings.allow_cpu_fallback)  # before any data is read
    prepared = prepare(fn_args, settings)
    best = search_space.best_values(fn_args.hyperparameters)
    if best:
        prepared = with_values(prepared, best)
        prepared.options.choices["tuner"] = best
        log.info("hyperparameters from the Tuner: %s", search_space.describe(best))
    settings, class_names, tft_output = prepared.options.settings, prepared.class_names, prepared.tft_output
    kind, size = settings.backbone_entry.kind, settings.image_size
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs"), write_graph=False)
    start_from = prepared.start_from
    backup_dir = _backup_dir(fn_args, start_from)
    model, history = fit(prepared, [tensorboard], backup_dir)
    options = prepared.options
    options.choices["init_from"] = f"serving version {os.path.basename(start_from)}" if start_from else "backbone"
    options.choices["devices"] = devices.describe(keras.mixed_precision.global_policy().name, fallback)

    started = time.time()
    served = float32_twin(model, settings, len(class_names))
    export_model(served, tft_output, class_names, fn_args.serving_model_dir, settings)
    save_serving_check(served, tft_output, fn_args.eval_files, fn_args.serving_model_dir, kind)
    log.info("exported SavedModel in %.1fs", time.time() - started)
    if settings.export.kinds:
        started = time.time()
        tflite_export.export_and_check(
            fn_args.serving_model_dir,
            class_names,
            settings.export,
            size,
            fn_args.train_files,
            fn_args.eval_files,
            rejected_dir=os.path.join(fn_args.model_run_dir, "tflite_rejected"),
        )
        log.info("TFLite models converted and checked on the eval split in %.1fs", time.time() - started)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
        json.dump(history, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, CHOICES_FILE), "w") as f:
        json.dump(options.choices, f, indent=1)
    tf.io.gfile.rmtree(backup_dir)


def _backup_dir(fn_args, start_from: Optional[str] = None) -> str:
    """Where an interrupted Trainer finds its progress when TFX runs it again: outside the
    per-execution artifact folders (a re-run is a new execution), keyed by everything that
    determines the training (the served version it started from too), so a changed
    configuration never resumes a stale run."""
    key = json.dumps(
        [
            start_from,
            fn_args.custom_config,
            fn_args.hyperparameters,
            sorted(fn_args.train_files),
            sorted(fn_args.eval_files),
            fn_args.transform_graph_path,
        ],
        sort_keys=True,
        default=str,
    )
    trainer_root = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return os.path.join(trainer_root, "resume", hashlib.sha256(key.encode()).hexdigest()[:16])
