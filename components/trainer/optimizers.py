"""Each stage's optimizer, loss and compile: a fresh optimizer per stage, learning-rate
schedules, and discriminative (per-layer) rates."""

from __future__ import annotations

import re

import tensorflow as tf
import tf_keras as keras

from components.backbones import bert_encoder
from components.trainer.model import backbone_of
from components.trainer.schedules import make_schedule
from components.trainer.stages import Stage

_OPTIMIZERS = {
    "sgd": (keras.optimizers.legacy.SGD, {"momentum": 0.9}),
    "rmsprop": (keras.optimizers.legacy.RMSprop, {}),
    "adam": (keras.optimizers.legacy.Adam, {}),
}
_DISCRIMINATIVE = {}
_REPLICA_SUFFIX = re.compile(r"/replica_\d+(?=:\d+$)")


def _discriminative(base_class):
    """`base_class` whose step for each variable is scaled by its multiplier: the update is
    applied, then pulled back to before + multiplier * (after - before). Works for any
    optimizer, Adam included (whose step does not scale with the gradient)."""
    if base_class not in _DISCRIMINATIVE:

        class Discriminative(base_class):
            def __init__(self, *args, multipliers=None, **kwargs):
                super().__init__(*args, **kwargs)
                self._multipliers = dict(multipliers or {})

            def _scaled(self, var, apply):
                multiplier = self._multipliers.get(variable_key(var), 1.0)
                if multiplier == 1.0:
                    return apply()
                before = tf.identity(var)
                with tf.control_dependencies([before]):
                    update = apply()
                with tf.control_dependencies([update]):
                    return var.assign(before + multiplier * (var - before))

            def _resource_apply_dense(self, grad, var, apply_state=None):
                parent = super()._resource_apply_dense
                return self._scaled(var, lambda: parent(grad, var, apply_state))

            # Embedding lookups give sparse gradients (IndexedSlices): word embeddings, the
            # lowest layer of a text encoder, take this path (its one entry point: SGD bypasses
            # _resource_apply_sparse without momentum).
            def _resource_apply_sparse_duplicate_indices(self, grad, var, indices, **kwargs):
                parent = super()._resource_apply_sparse_duplicate_indices
                return self._scaled(var, lambda: parent(grad, var, indices, **kwargs))

        Discriminative.__name__ = f"Discriminative{base_class.__name__}"
        _DISCRIMINATIVE[base_class] = Discriminative
    return _DISCRIMINATIVE[base_class]


def variable_key(variable) -> str:
    """A model variable's name, the same for the variable and, under MirroredStrategy, for each
    replica's copy (named '<name>/replica_<i>:0'), which is what an optimizer's update sees:
    keyed by `var.ref()`, no multiplier ever matched there."""
    return _REPLICA_SUFFIX.sub("", variable.name)


def discriminative_multipliers(model: keras.Model, lowest: float) -> dict:
    """{variable key: multiplier}: 1 for the head and the top trainable backbone layer, falling
    geometrically to `lowest` for the deepest trainable backbone layer."""
    groups = []  # trainable backbone variables by depth, deepest first
    for layer in backbone_of(model).layers:
        if not (layer.trainable and layer.trainable_weights):
            continue
        if isinstance(layer, bert_encoder.BlockTrainableEncoder):  # one Keras layer: by block
            groups.extend(layer.depth_groups())
        else:
            groups.append(layer.trainable_weights)
    multipliers = {}
    for depth, variables in enumerate(groups):
        position = depth / max(1, len(groups) - 1)  # 0 deepest .. 1 top
        for variable in variables:
            multipliers[variable_key(variable)] = lowest ** (1.0 - position)
    return multipliers


def make_optimizer(stage: Stage, steps_per_epoch: int = 1, multipliers: dict | None = None):
    """The stage's optimizer with its learning-rate schedule. Keras' legacy optimizers: they
    trace their update in ~1 s where the new ones took ~12 s on 2 CPUs, for the same math."""
    rate = make_schedule(stage.schedule, stage.learning_rate, steps_per_epoch, stage.epochs)
    optimizer_class, extra = _OPTIMIZERS[stage.optimizer]
    if multipliers:
        return _discriminative(optimizer_class)(rate, multipliers=multipliers, **extra)
    return optimizer_class(rate, **extra)


def make_loss(num_classes: int, label_smoothing: float = 0.0):
    """Sparse labels in; label smoothing needs one-hot targets, so they are made here."""
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy()
    cross_entropy = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def smoothed(y_true, y_pred):
        return cross_entropy(tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes), y_pred)

    return smoothed


def compile_for_stage(
    model: keras.Model,
    stage: Stage,
    steps_per_epoch: int = 1,
    label_smoothing: float = 0.0,
    discriminative_lr: float = 0.0,
) -> None:
    """A fresh optimizer per stage, so no optimizer state leaks from one stage to the next.
    `discriminative_lr` in (0, 1): the deepest trainable backbone layer learns at that
    fraction of the stage's rate, rising geometrically to the full rate at the top."""
    multipliers = (
        discriminative_multipliers(model, discriminative_lr)
        if discriminative_lr and stage.trainable != "none"
        else None
    )
    model.compile(
        optimizer=make_optimizer(stage, steps_per_epoch, multipliers),
        loss=make_loss(model.output_shape[-1], label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
