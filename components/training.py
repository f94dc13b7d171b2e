"""Running the stages: plain Keras, testable without TFX."""
from __future__ import annotations

import json
import logging
import os
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
                 eval_ds: tf.data.Dataset, callbacks=(), backup_dir: str | None = None) -> list[dict]:
    """Trains each stage in turn, recompiling between stages; returns per-epoch history rows.

    With `backup_dir`, progress survives a killed process: a finished stage leaves its weights
    and history there (and is skipped on the next call), the running stage resumes from its
    last completed epoch (Keras' BackupAndRestore). The caller removes the folder when done.
    """
    history = []
    for index, stage in enumerate(stages, 1):
        apply_stage(model, stage)
        compile_for_stage(model, stage)
        stage_dir = os.path.join(backup_dir, f"stage{index}") if backup_dir else None
        if stage_dir and tf.io.gfile.exists(os.path.join(stage_dir, "done.json")):
            model.load_weights(os.path.join(stage_dir, "weights"))
            with tf.io.gfile.GFile(os.path.join(stage_dir, "done.json")) as f:
                history += json.load(f)
            log.info("stage %d/%d %s: completed before an interruption; restored", index, len(stages), stage.name)
            continue
        trainable = sum(int(tf.size(v)) for v in model.trainable_variables)
        log.info("stage %d/%d %s: %d epochs, learning rate %g, %s trainable parameters",
                 index, len(stages), stage.name, stage.epochs, stage.learning_rate, f"{trainable:,}")
        stage_callbacks = [EpochProgress(stage, index, len(stages)), *callbacks]
        if stage_dir:
            resume_dir = os.path.join(stage_dir, "resume")
            if tf.io.gfile.exists(resume_dir) and tf.io.gfile.listdir(resume_dir):
                log.info("stage %d/%d %s: resuming after an interruption from the last completed epoch",
                         index, len(stages), stage.name)
            # First in line: an epoch reported as done is already backed up.
            stage_callbacks.insert(0, keras.callbacks.BackupAndRestore(resume_dir))
        result = model.fit(train_ds, validation_data=eval_ds, epochs=stage.epochs, verbose=0,
                           callbacks=stage_callbacks)
        ran = len(result.history.get("loss", []))
        rows = []
        for i in range(ran):
            row = {"stage": stage.name, "epoch": stage.epochs - ran + i + 1}
            row.update({k: float(v[i]) for k, v in result.history.items() if i < len(v)})
            rows.append(row)
        history += rows
        if stage_dir:
            model.save_weights(os.path.join(stage_dir, "weights"))
            with tf.io.gfile.GFile(os.path.join(stage_dir, "done.json"), "w") as f:
                json.dump(rows, f)
    return history
