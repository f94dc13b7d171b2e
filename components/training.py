"""Running the stages: plain Keras, testable without TFX."""
from __future__ import annotations

import logging
import time

import tensorflow as tf
import tf_keras as keras

from components.model import apply_stage, compile_for_stage
from components.stages import Stage

log = logging.getLogger("graft.trainer")


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
        shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
        log.info("stage %d/%d %s: epoch %d/%d %s (%.1fs)", self._index, self._count, self._stage.name,
                 epoch + 1, self._stage.epochs, shown, time.time() - self._start)


def train_stages(model: keras.Model, stages: list[Stage], train_ds: tf.data.Dataset,
                 eval_ds: tf.data.Dataset, callbacks=()) -> list[dict]:
    """Trains each stage in turn, recompiling between stages; returns per-epoch history rows."""
    history = []
    for index, stage in enumerate(stages, 1):
        apply_stage(model, stage)
        compile_for_stage(model, stage)
        trainable = sum(int(tf.size(v)) for v in model.trainable_variables)
        log.info("stage %d/%d %s: %d epochs, learning rate %g, %s trainable parameters",
                 index, len(stages), stage.name, stage.epochs, stage.learning_rate, f"{trainable:,}")
        result = model.fit(train_ds, validation_data=eval_ds, epochs=stage.epochs, verbose=0,
                           callbacks=[EpochProgress(stage, index, len(stages)), *callbacks])
        for epoch in range(stage.epochs):
            row = {"stage": stage.name, "epoch": epoch + 1}
            row.update({k: float(v[epoch]) for k, v in result.history.items() if epoch < len(v)})
            history.append(row)
    return history
