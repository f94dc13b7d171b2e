"""Learning-rate schedules for a stage, as Keras LearningRateSchedules over optimizer steps.

- constant: the stage's learning rate.
- exponential: lr * decay_rate ** (step / decay_steps).
- cosine: linear warmup over `warmup_epochs` from 0 to lr, then cosine decay to alpha * lr.
- one_cycle: rises from lr / div_factor to lr over the first `pct_start` of the stage, then
  falls (cosine) to lr / (div_factor * final_div_factor), as in the one-cycle policy.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.max_lr, self.total_steps = float(max_lr), max(1, int(total_steps))
        self.pct_start, self.div_factor, self.final_div_factor = (
            float(pct_start),
            float(div_factor),
            float(final_div_factor),
        )

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        up = max(1.0, self.pct_start * self.total_steps)
        down = max(1.0, self.total_steps - up)
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor

        def anneal(a, b, fraction):
            return b + (a - b) * (1 + tf.cos(math.pi * tf.clip_by_value(fraction, 0.0, 1.0))) / 2

        return tf.where(step < up, anneal(start, self.max_lr, step / up), anneal(self.max_lr, end, (step - up) / down))

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def make_schedule(spec: dict, learning_rate: float, steps_per_epoch: int, epochs: int):
    """A float (constant) or a LearningRateSchedule for one stage."""
    kind = spec.get("type", "constant")
    total = max(1, steps_per_epoch * epochs)
    if kind == "constant":
        return learning_rate
    if kind == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=spec.get("decay_steps", steps_per_epoch), decay_rate=spec.get("decay_rate", 0.9)
        )
    if kind == "cosine":
        warmup = int(spec.get("warmup_epochs", 0) * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate,
            decay_steps=max(1, total - warmup),
            alpha=spec.get("alpha", 0.0),
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if kind == "one_cycle":
        return OneCycle(
            learning_rate,
            total,
            spec.get("pct_start", 0.3),
            spec.get("div_factor", 25.0),
            spec.get("final_div_factor", 1e4),
        )
    raise ValueError(f"unknown schedule {kind!r}")
