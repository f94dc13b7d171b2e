"""The grafted model: a backbone plus a new classification head, and stage switching.

BatchNorm layers run in inference mode by default (the backbone is called with
training=False): on small fine-tuning data, batch statistics are noisy and would wreck the
pretrained moving averages, the classic transfer-learning guides' advice. `train_batchnorm`
lets them train, which a backbone trained from scratch (weights none) needs.
"""
from __future__ import annotations

import tf_keras as keras

from components import backbones
from components.stages import Stage

BACKBONE_LAYER = "backbone"
OUTPUT_LAYER = "probabilities"


def build_model(
    backbone: backbones.Backbone,
    num_classes: int,
    image_size: int,
    weights: str = "none",
    dropout: float = 0.2,
    train_batchnorm: bool = False,
    batchnorm_momentum: float | None = None,
    backbone_kwargs: dict | None = None,
) -> keras.Model:
    """Backbone (frozen) + global average pooling + dropout + softmax head, float32 output."""
    base = backbones.build(backbone, image_size, weights, **(backbone_kwargs or {}))
    base._name = BACKBONE_LAYER
    if batchnorm_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = batchnorm_momentum
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = base(inputs, training=None if train_batchnorm else False)
    # Keras Applications give a feature map; TF Hub feature vectors are already pooled.
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features) if len(features.shape) == 4 else features
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)
    model = keras.Model(inputs, outputs, name=f"graft_{backbone.name}")
    _skip_autograph(model)
    return model


def _skip_autograph(model: keras.Model) -> None:
    """Keras layers need no AutoGraph (their Python branches are on Python values), yet tf_keras
    converts every layer's code when it traces train/test steps: measured 61 s -> 10 s for the
    first epoch of MobileNetV2 on 2 CPUs, identical steady-state steps."""
    import tensorflow as tf

    for name in ("train_step", "test_step", "predict_step"):
        setattr(model, name, tf.autograph.experimental.do_not_convert(getattr(model, name)))


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def first_trainable_layer(base: keras.Model, trainable, backbone: backbones.Backbone | None = None) -> int:
    """Index of the lowest backbone layer that trains under `trainable` (see stages.py)."""
    layers = base.layers
    if trainable == "all":
        return 0
    if isinstance(trainable, int):
        return max(0, len(layers) - trainable)
    if trainable.startswith("top:"):
        return len(layers) - max(1, round(float(trainable[4:]) * len(layers)))
    block = trainable[5:]  # from:<block>
    names = backbones.blocks(backbone, base) if backbone else []
    if block not in names:
        raise ValueError(f"trainable {trainable!r}: no block {block!r} in {base.name}; blocks: {', '.join(names)}")
    import re

    for index, layer in enumerate(layers):
        match = re.search(backbone.block_pattern, layer.name)
        if match and match.group(1) == block:
            return index
    raise AssertionError("unreachable: the block was found above")


def apply_stage(model: keras.Model, stage: Stage, backbone: backbones.Backbone | None = None) -> None:
    """Sets what trains in `stage`: nothing of the backbone, its top layers, from a block up, or all."""
    base = backbone_of(model)
    if stage.trainable == "none":
        base.trainable = False
        return
    base.trainable = True
    first = first_trainable_layer(base, stage.trainable, backbone)
    for layer in base.layers[:first]:
        layer.trainable = False


_OPTIMIZERS = {"sgd": (keras.optimizers.legacy.SGD, {"momentum": 0.9}),
               "rmsprop": (keras.optimizers.legacy.RMSprop, {}),
               "adam": (keras.optimizers.legacy.Adam, {})}
_DISCRIMINATIVE = {}


def _discriminative(base_class):
    """`base_class` whose step for each variable is scaled by its multiplier: the update is
    applied, then pulled back to before + multiplier * (after - before). Works for any
    optimizer, Adam included (whose step does not scale with the gradient)."""
    if base_class not in _DISCRIMINATIVE:
        import tensorflow as tf

        class Discriminative(base_class):
            def __init__(self, *args, multipliers=None, **kwargs):
                super().__init__(*args, **kwargs)
                self._multipliers = dict(multipliers or {})

            def _resource_apply_dense(self, grad, var, apply_state=None):
                multiplier = self._multipliers.get(var.ref(), 1.0)
                if multiplier == 1.0:
                    return super()._resource_apply_dense(grad, var, apply_state)
                before = tf.identity(var)
                with tf.control_dependencies([before]):
                    update = super()._resource_apply_dense(grad, var, apply_state)
                with tf.control_dependencies([update]):
                    return var.assign(before + multiplier * (var - before))

        Discriminative.__name__ = f"Discriminative{base_class.__name__}"
        _DISCRIMINATIVE[base_class] = Discriminative
    return _DISCRIMINATIVE[base_class]


def discriminative_multipliers(model: keras.Model, lowest: float) -> dict:
    """{variable ref: multiplier}: 1 for the head and the top trainable backbone layer, falling
    geometrically to `lowest` for the deepest trainable backbone layer."""
    layers = [layer for layer in backbone_of(model).layers if layer.trainable and layer.trainable_weights]
    multipliers = {}
    for depth, layer in enumerate(layers):
        position = depth / max(1, len(layers) - 1)  # 0 deepest .. 1 top
        for variable in layer.trainable_weights:
            multipliers[variable.ref()] = lowest ** (1.0 - position)
    return multipliers


def make_optimizer(stage: Stage, steps_per_epoch: int = 1, multipliers: dict | None = None):
    """The stage's optimizer with its learning-rate schedule. Keras' legacy optimizers: they
    trace their update in ~1 s where the new ones took ~12 s on 2 CPUs, for the same math."""
    from components.schedules import make_schedule

    rate = make_schedule(stage.schedule, stage.learning_rate, steps_per_epoch, stage.epochs)
    optimizer_class, extra = _OPTIMIZERS[stage.optimizer]
    if multipliers:
        return _discriminative(optimizer_class)(rate, multipliers=multipliers, **extra)
    return optimizer_class(rate, **extra)


def make_loss(num_classes: int, label_smoothing: float = 0.0):
    """Sparse labels in; label smoothing needs one-hot targets, so they are made here."""
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy()
    import tensorflow as tf

    cross_entropy = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def smoothed(y_true, y_pred):
        return cross_entropy(tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes), y_pred)

    return smoothed


def compile_for_stage(model: keras.Model, stage: Stage, steps_per_epoch: int = 1, label_smoothing: float = 0.0,
                      discriminative_lr: float = 0.0) -> None:
    """A fresh optimizer per stage, so no optimizer state leaks from one stage to the next.
    `discriminative_lr` in (0, 1): the deepest trainable backbone layer learns at that
    fraction of the stage's rate, rising geometrically to the full rate at the top."""
    multipliers = (discriminative_multipliers(model, discriminative_lr)
                   if discriminative_lr and stage.trainable != "none" else None)
    model.compile(
        optimizer=make_optimizer(stage, steps_per_epoch, multipliers),
        loss=make_loss(model.output_shape[-1], label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
