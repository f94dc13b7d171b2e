"""A learning-rate range test (fastai's `lr_find`, after Smith 2017): the head's rate found on
the training data instead of assumed.

The rate rises exponentially from `low` to `high` over `steps` optimizer steps on the training
batches; the loss is recorded, smoothed, and the test stops once it diverges. The rate picked is
the one of the lowest smoothed loss divided by 10: at the minimum the steps are already too
large to keep improving, one decade below they are the largest that still do. The weights and
the optimizer are put back as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.trainer.optimizers import make_loss


@dataclass(frozen=True)
class RateSearch:
    rate: float  # the rate picked
    rates: tuple  # the sweep's rates, as tried
    losses: tuple  # the smoothed loss at each

    def to_dict(self) -> dict:
        return {
            "rate": self.rate,
            "steps": len(self.rates),
            "lowest_loss_rate": self.rates[int(np.argmin(self.losses))],
        }


def find_rate(
    model: keras.Model,
    dataset: tf.data.Dataset,
    label_smoothing: float = 0.0,
    steps: int = 100,
    low: float = 1e-5,
    high: float = 1.0,
    smoothing: float = 0.9,
    sweeps: int = 1,
) -> RateSearch:
    """Sweeps Adam's rate on `model` (compiled or not) over `dataset` (repeated as needed);
    returns the rate picked (the lowest smoothed loss's rate / 10) and the curve. With `sweeps`
    > 1 the sweep is repeated from the same weights on the following batches and the curves
    averaged: one curve's minimum moves with the batches it met (the rate picked varied 4x
    across seeds on the review sentences), the average's much less."""
    saved = [w.numpy().copy() for w in model.weights]

    def restore():
        for weight, value in zip(model.weights, saved):
            weight.assign(value)

    batches = iter(dataset.repeat())
    curves = []
    try:
        for sweep in range(sweeps):
            if sweep:
                restore()  # each sweep from the same weights
            curves.append(_sweep(model, batches, label_smoothing, steps, low, high, smoothing))
    finally:
        restore()
    length = min(len(losses) for _, losses in curves)
    rates = curves[0][0][:length]
    losses = np.mean([losses[:length] for _, losses in curves], axis=0).tolist() if length else []
    lowest = int(np.argmin(losses)) if losses else 0
    rate = (rates[lowest] if rates else low * 10) / 10
    return RateSearch(rate=float(rate), rates=tuple(rates), losses=tuple(losses))


def _sweep(model, batches, label_smoothing, steps, low, high, smoothing) -> tuple[list, list]:
    """One sweep from the model's current weights: (rates, smoothed losses) until it diverges."""
    optimizer = keras.optimizers.legacy.Adam(low)
    loss_fn = make_loss(model.output_shape[-1], label_smoothing)
    variables = model.trainable_variables

    @tf.function(autograph=False)
    def step(x, y, rate):
        optimizer.learning_rate.assign(rate)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rates, losses, average, best = [], [], 0.0, math.inf
    for i in range(steps):
        rate = low * (high / low) ** (i / max(1, steps - 1))
        x, y = next(batches)
        loss = float(step(x, y, tf.constant(rate, tf.float32)))
        if not math.isfinite(loss):
            break
        average = smoothing * average + (1 - smoothing) * loss
        smoothed = average / (1 - smoothing ** (i + 1))  # bias-corrected, as fastai's
        rates.append(rate)
        losses.append(smoothed)
        best = min(best, smoothed)
        if i > 10 and smoothed > 4 * best:
            break  # diverged: larger rates only get worse
    return rates, losses
