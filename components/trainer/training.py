"""Running the stages: plain Keras, testable without TFX."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.trainer.model import OUTPUT_LAYER, apply_stage, backbone_of, load_weights_only, skip_autograph
from components.trainer.optimizers import compile_for_stage
from components.trainer.rate_finder import find_rate
from components.trainer.settings import TrainerSettings
from components.trainer.stages import MAX_DERIVED_FINE_TUNE_RATE, Stage

log = logging.getLogger("graft.trainer")
# A minimum in steps adds at most this many epochs: with a batch or two an epoch, Keras' own
# per-epoch cost (~45 ms) would outweigh the steps (text_tfidf's 3,000 on 40 texts: 1,500 epochs).
MAX_EPOCHS_FOR_MIN_STEPS = 300
# Range-test sweeps averaged when the sweep runs on cached features (a head: milliseconds a step).
RATE_SWEEPS_ON_CACHED_FEATURES = 3


class EpochProgress(keras.callbacks.Callback):
    """One concise line per epoch for the progress view."""

    def __init__(self, stage: Stage, index: int, count: int):
        super().__init__()
        self._stage, self._index, self._count = stage, index, count
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = " ".join(
            f"{k}={v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")
        )
        log.info(
            "stage %d/%d %s: epoch %d/%d %s (%.1fs)",
            self._index,
            self._count,
            self._stage.name,
            epoch + 1,
            self._stage.epochs,
            shown,
            time.time() - self._start,
        )


@dataclass
class TrainingOptions:
    """What train_stages needs beside the model and data: the Trainer's settings, and what the
    run measured (steps per epoch for the schedules, class weights, augmented data or not)."""

    settings: TrainerSettings
    steps_per_epoch: int = 1
    class_weight: Optional[dict] = None
    augmented: bool = False  # whether train_ds applies random augmentation (no feature caching then)
    # The training batches in order, without augmentation: set when augmented, or when they are
    # not cached (a pass that needs no shuffle, the features' or BatchNorm's, reads these).
    plain_train_ds: Optional[tf.data.Dataset] = None
    choices: dict = field(default_factory=dict)  # filled in: what the defaults chose (rate search, each stage's budget)


def split_at_pool(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(features, head) sharing the model's layers: features = backbone + pooling, head = the
    rest. Training the head trains the grafted model's own head layers."""
    names = [layer.name for layer in model.layers]
    cut = names.index("pool") if "pool" in names else names.index("backbone")
    # The last node: a nested backbone (TF Hub) also has a node in its own graph.
    cut_output = model.layers[cut].get_output_at(-1)
    features = keras.Model(model.input, cut_output, name="features")
    head_input = keras.Input(cut_output.shape[1:], name="features")
    x = head_input
    for layer in model.layers[cut + 1 :]:
        x = layer(x)
    head = keras.Model(head_input, x, name="head")
    assert head.layers[-1].name == OUTPUT_LAYER
    skip_autograph(head)
    return features, head


def cached_features(
    features: keras.Model, dataset: tf.data.Dataset, batch_size: int, shuffle_seed: Optional[int], limit_bytes: int
) -> Optional[tf.data.Dataset]:
    """The backbone's pooled features for every example, computed once on the training device
    and kept in memory; None when they would take more than `limit_bytes`.

    The backbone runs in a compiled function called from this loop, not inside a tf.data map:
    tf.data functions run on the host CPU, so on a GPU node the "fast" frozen stage would have
    computed every feature there."""
    compute = tf.function(lambda images: features(images, training=False), autograph=False)
    outputs, labels, size = [], [], 0
    for images, batch_labels in dataset:
        outputs.append(compute(images).numpy())
        labels.append(batch_labels.numpy())
        size += outputs[-1].nbytes
        if size > limit_bytes:
            return None
    # The features once, in NumPy, gathered by shuffled index: slicing them into a dataset (a
    # tensor copy) and a shuffle buffer (another) held them about four times at the peak (1.2 GB
    # beside 0.3 GB of features for 57,000 images in make bench-scale).
    all_features, all_labels = _concatenated(outputs), _concatenated(labels)
    order = tf.data.Dataset.range(len(all_labels))
    if shuffle_seed is not None:
        order = order.shuffle(len(all_labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    feature_shape, label_shape = [None, *all_features.shape[1:]], [None, *all_labels.shape[1:]]

    def gather(index):
        found = tf.numpy_function(
            lambda i: (all_features[i], all_labels[i]),
            [index],
            (tf.as_dtype(all_features.dtype), tf.as_dtype(all_labels.dtype)),
            stateful=False,
        )
        found[0].set_shape(feature_shape)
        found[1].set_shape(label_shape)
        return found[0], found[1]

    return order.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def _concatenated(batches: list) -> np.ndarray:
    """The batches as one array; the list is emptied, so that at most two copies exist at once."""
    joined = np.concatenate(batches)
    batches.clear()
    return joined


def trained_batchnorm_layers(model: keras.Model) -> list:
    """The backbone's BatchNorm layers that train in the current stage (after apply_stage)."""
    base = backbone_of(model)
    return [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recalibrate_batchnorm(model: keras.Model, dataset: tf.data.Dataset, layers: list, max_batches: int = 100) -> int:
    """Re-estimates the moving mean and variance of `layers` (backbone BatchNorm layers: those
    that trained in the stage; frozen ones keep their pretrained statistics) as the plain
    average over (up to `max_batches`) training batches, without augmentation (what inference
    sees), with the weights as trained; returns the number of batches used.

    Moving averages trail the weights: after a few hundred steps of a fast-changing backbone
    trained from scratch they describe earlier weights, and inference (which uses them) can
    score at chance while training accuracy is high. A pass with momentum k/(k+1) on batch k
    makes them the exact average for the final weights (as the literature's "BN recalibration")."""
    base = backbone_of(model)
    if not layers:
        return 0
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    used = 0
    try:
        for layer in layers:
            layer.trainable = True  # a frozen BatchNorm layer runs in inference mode whatever `training` says
        for used, (images, _) in enumerate(dataset.take(max_batches), 1):
            for layer in layers:
                layer.momentum = (used - 1) / used  # eager call: read now, batch 1 replaces the old averages
            base(images, training=True)
    finally:
        for layer, (momentum, trainable) in zip(layers, saved):
            layer.momentum, layer.trainable = momentum, trainable
    return used


def balanced_class_weights(counts: dict) -> dict:
    """{class index: weight} so that every class weighs as much in the loss (n / (k * n_c))."""
    total, k = sum(counts.values()), len(counts)
    return {c: total / (k * n) for c, n in counts.items() if n}


def planned(stage: Stage, steps_per_epoch: int, found_rate: Optional[float]) -> Stage:
    """`stage` with what it runs: its rate (the range test's times `rate_scale` when it has none,
    at most MAX_DERIVED_FINE_TUNE_RATE for a fine-tuning stage) and enough epochs for `min_steps`
    optimizer steps (small data: 5 epochs of 3 batches are 15 steps, too few for a head to converge)."""
    rate = stage.learning_rate
    if rate is None:
        rate = found_rate * stage.rate_scale
        if stage.rate_scale < 1.0:  # a fine-tuning stage's fraction of the head's rate
            rate = min(rate, MAX_DERIVED_FINE_TUNE_RATE)
    epochs = max(stage.epochs, min(math.ceil(stage.min_steps / max(1, steps_per_epoch)), MAX_EPOCHS_FOR_MIN_STEPS))
    return replace(stage, learning_rate=rate, epochs=epochs)


_RATE_FILE = "found_rate.json"


def _saved_rate(backup_dir: Optional[str]) -> Optional[float]:
    path = os.path.join(backup_dir, _RATE_FILE) if backup_dir else ""
    if path and tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    return None


def _save_rate(backup_dir: Optional[str], rate: float) -> None:
    if backup_dir:
        tf.io.gfile.makedirs(backup_dir)
        with tf.io.gfile.GFile(os.path.join(backup_dir, _RATE_FILE), "w") as f:
            json.dump(rate, f)


def train_stages(
    model: keras.Model,
    stages: list[Stage],
    train_ds: tf.data.Dataset,
    validation_ds: Optional[tf.data.Dataset],
    options: TrainingOptions,
    callbacks=(),
    backup_dir: str | None = None,
) -> list[dict]:
    """Trains each stage in turn, recompiling between stages; returns per-epoch history rows.

    With `backup_dir`, progress survives a killed process: a finished stage leaves its weights
    and history there (and is skipped on the next call), the running stage resumes from its
    last completed epoch (Keras' BackupAndRestore). The caller removes the folder when done.
    """
    settings = options.settings
    history = []
    found = _saved_rate(backup_dir)  # a resumed run keeps the rate its first run found
    for index, stage in enumerate(stages, 1):
        apply_stage(model, stage, settings.backbone_entry)
        stage_dir = os.path.join(backup_dir, f"stage{index}") if backup_dir else None
        if stage_dir and tf.io.gfile.exists(os.path.join(stage_dir, "done.json")):
            load_weights_only(model, os.path.join(stage_dir, "weights"))
            with tf.io.gfile.GFile(os.path.join(stage_dir, "done.json")) as f:
                history += json.load(f)
            log.info("stage %d/%d %s: completed before an interruption; restored", index, len(stages), stage.name)
            continue
        stage_started = time.time()
        cache = stage.trainable == "none" and settings.feature_caching and not options.augmented
        if cache:
            # The frozen backbone gives the same features every epoch: compute them once and
            # train the head alone on them (the head's layers are the grafted model's own).
            started = time.time()
            features, head = split_at_pool(model)
            limit = settings.feature_cache_mb << 20
            in_order = options.plain_train_ds if options.plain_train_ds is not None else train_ds
            train_features = cached_features(features, in_order, settings.batch_size, 0, limit)
            validation_features = None
            if train_features is not None and validation_ds is not None:
                validation_features = cached_features(features, validation_ds, settings.batch_size, None, limit)
            if train_features is None or (validation_ds is not None and validation_features is None):
                cache = False
                log.info(
                    "stage %d/%d %s: features would exceed feature_cache_mb=%d; training through the frozen "
                    "backbone instead",
                    index,
                    len(stages),
                    stage.name,
                    settings.feature_cache_mb,
                )
        if stage.learning_rate is None and found is None:
            # The rate range test, on what this stage trains: the head on its cached features
            # (milliseconds a step: three sweeps, averaged, for a steadier rate), or the model.
            search = find_rate(
                head if cache else model,
                train_features if cache else train_ds,
                settings.label_smoothing,
                sweeps=RATE_SWEEPS_ON_CACHED_FEATURES if cache else 1,
            )
            found = search.rate
            options.choices["rate_search"] = search.to_dict()
            _save_rate(backup_dir, found)
            log.info(
                "stage %d/%d %s: learning rate %.3g found by a range test (%d steps; lowest loss at %.3g, "
                "one decade below)",
                index,
                len(stages),
                stage.name,
                found,
                len(search.rates),
                options.choices["rate_search"]["lowest_loss_rate"],
            )
        stage = planned(stage, options.steps_per_epoch, found)
        options.choices.setdefault("stages", []).append(
            {
                "name": stage.name,
                "trainable": stage.trainable,
                "learning_rate": stage.learning_rate,
                "epochs": stage.epochs,
                "steps": stage.epochs * options.steps_per_epoch,
            }
        )
        compile_for_stage(model, stage, options.steps_per_epoch, settings.label_smoothing, settings.discriminative_lr)
        trainable = sum(int(tf.size(v)) for v in model.trainable_variables)
        log.info(
            "stage %d/%d %s: %d epochs (%d steps), learning rate %.3g, %s trainable parameters",
            index,
            len(stages),
            stage.name,
            stage.epochs,
            stage.epochs * options.steps_per_epoch,
            stage.learning_rate,
            f"{trainable:,}",
        )
        stage_callbacks = [EpochProgress(stage, index, len(stages)), *callbacks]
        if settings.early_stopping_patience:
            stage_callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True
                )
            )
        if stage_dir:
            resume_dir = os.path.join(stage_dir, "resume")
            if tf.io.gfile.exists(resume_dir) and tf.io.gfile.listdir(resume_dir):
                log.info(
                    "stage %d/%d %s: resuming after an interruption from the last completed epoch",
                    index,
                    len(stages),
                    stage.name,
                )
            # First in line: an epoch reported as done is already backed up.
            stage_callbacks.insert(0, keras.callbacks.BackupAndRestore(resume_dir))
        if cache:
            head.compile(
                optimizer=model.optimizer,
                loss=model.loss,
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )
            log.info(
                "stage %d/%d %s: frozen backbone, training the head on cached features", index, len(stages), stage.name
            )
            fitted, train_data, validation_data = head, train_features, validation_features
        else:
            fitted, train_data, validation_data = model, train_ds, validation_ds
        result = fitted.fit(
            train_data,
            validation_data=validation_data,
            epochs=stage.epochs,
            verbose=0,
            callbacks=stage_callbacks,
            class_weight=options.class_weight,
        )
        if cache:
            log.info("stage %d/%d %s: done in %.1fs", index, len(stages), stage.name, time.time() - started)
        batches = (
            recalibrate_batchnorm(
                model,
                options.plain_train_ds if options.plain_train_ds is not None else train_ds,
                trained_batchnorm_layers(model),
            )
            if settings.train_batchnorm and stage.trainable != "none"
            else 0
        )
        if batches:
            log.info(
                "stage %d/%d %s: BatchNorm statistics re-estimated over %d training batches",
                index,
                len(stages),
                stage.name,
                batches,
            )
        # The whole stage, the cached features and the BatchNorm pass included: what it cost.
        stage_seconds = round(time.time() - stage_started, 2)
        ran = len(result.history.get("loss", []))
        first_epoch = getattr(result, "epoch", [0])[0] if getattr(result, "epoch", None) else stage.epochs - ran
        rows = []
        for i in range(ran):
            row = {"stage": stage.name, "epoch": first_epoch + i + 1, "stage_seconds": stage_seconds}
            row.update({k: float(v[i]) for k, v in result.history.items() if i < len(v)})
            rows.append(row)
        history += rows
        if stage_dir:
            model.save_weights(os.path.join(stage_dir, "weights"))
            with tf.io.gfile.GFile(os.path.join(stage_dir, "done.json"), "w") as f:
                json.dump(rows, f)
    return history
