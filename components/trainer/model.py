"""The grafted model: a backbone plus a new classification head, and stage switching.

BatchNorm layers run in inference mode by default (the backbone is called with
training=False): on small fine-tuning data, batch statistics are noisy and would wreck the
pretrained moving averages, the classic transfer-learning guides' advice. `train_batchnorm`
lets them train, which a backbone trained from scratch (weights none) needs.
"""

from __future__ import annotations

from dataclasses import replace

import tensorflow as tf
import tf_keras as keras

from components.backbones import bert_encoder, registry
from components.contract import PROBABILITIES
from components.trainer.settings import TrainerSettings
from components.trainer.stages import Stage

BACKBONE_LAYER = "backbone"
OUTPUT_LAYER = PROBABILITIES


def architecture_only(settings: TrainerSettings) -> TrainerSettings:
    """`settings` for a model whose weights are about to be overwritten (copied from a trained
    model, or loaded from a served one): none are downloaded, with two exceptions. A TF Hub
    handle is the architecture itself, so it stays, and so do ImageNet weights where Keras
    builds another graph with them (EfficientNet's extra rescaling: without it the copy computes
    other outputs from the same weights; the file is in the Keras cache from training)."""
    backbone = settings.backbone_entry
    if backbone.is_hub or (backbone.imagenet_changes_architecture and settings.weights == "imagenet"):
        return settings
    return replace(settings, weights="none")


def build_model(settings: TrainerSettings, num_classes: int) -> keras.Model:
    """Backbone (frozen) + global average pooling + dropout + softmax head, float32 output.
    For text: the text encoder (strings or token ids in, a vector out) + dropout + head."""
    backbone = settings.backbone_entry
    if backbone.kind == "text":
        return _build_text_model(settings, num_classes)
    size = settings.image_size
    base = registry.build(backbone, size, settings.weights, **settings.backbone_kwargs)
    base._name = BACKBONE_LAYER
    if settings.batchnorm_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = settings.batchnorm_momentum
    base.trainable = False
    inputs = keras.Input((size, size, 3), name="image")
    features = base(inputs, training=None if settings.train_batchnorm else False)
    # Keras Applications give a feature map; TF Hub feature vectors are already pooled.
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features) if len(features.shape) == 4 else features
    x = keras.layers.Dropout(settings.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)
    model = keras.Model(inputs, outputs, name=f"graft_{backbone.name}")
    skip_autograph(model)
    return model


def _build_text_model(settings: TrainerSettings, num_classes: int) -> keras.Model:
    backbone = settings.backbone_entry
    base = registry.build_text_encoder(
        backbone, settings.weights, settings.max_tokens, settings.vocab_size, settings.embedding_dim
    )
    base._name = BACKBONE_LAYER
    # A learned-from-scratch encoder trains from the start; a pretrained one starts frozen.
    base.trainable = backbone.name in registry.LEARNED_TEXT
    inputs = keras.Input(base.input.shape[1:], dtype=base.input.dtype, name="text")
    x = keras.layers.Dropout(settings.dropout, name="dropout")(base(inputs))
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        kernel_regularizer=keras.regularizers.L2(settings.head_l2) if settings.head_l2 else None,
        name=OUTPUT_LAYER,
    )(x)
    model = keras.Model(inputs, outputs, name=f"graft_{backbone.name}")
    skip_autograph(model)
    return model


# text_tfidf's head is scikit-learn's logistic regression at C = 4 (the bar's setting): its
# objective C * sum(loss) + |W|^2 / 2, divided by C * n, is Keras' mean loss + L2(1 / (2 C n)).
TFIDF_C = 4.0


def resolve_head_l2(settings: TrainerSettings, training_examples: int) -> TrainerSettings:
    """`settings` with head_l2 set: as given, or text_tfidf's for this many training examples."""
    if settings.head_l2 is not None:
        return settings
    tfidf = settings.backbone == registry.TEXT_TFIDF.name
    return replace(settings, head_l2=1.0 / (2 * TFIDF_C * max(1, training_examples)) if tfidf else 0.0)


def skip_autograph(model: keras.Model) -> None:
    """Keras layers need no AutoGraph (their Python branches are on Python values), yet tf_keras
    converts every layer's code when it traces train/test steps: measured 61 s -> 10 s for the
    first epoch of MobileNetV2 on 2 CPUs, identical steady-state steps."""
    for name in ("train_step", "test_step", "predict_step"):
        setattr(model, name, tf.autograph.experimental.do_not_convert(getattr(model, name)))


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def first_trainable_layer(base: keras.Model, stage: Stage, backbone: registry.Backbone | None = None) -> int:
    """Index of the lowest backbone layer that trains in `stage` (see stages.py)."""
    starts = registry.blocks(backbone, base) if backbone and stage.from_block else {}
    return stage.first_trainable(len(base.layers), starts, base.name)


def apply_stage(model: keras.Model, stage: Stage, backbone: registry.Backbone | None = None) -> None:
    """Sets what trains in `stage`: nothing of the backbone, its top layers, from a block up, or all."""
    base = backbone_of(model)
    if stage.trainable == "none":
        base.trainable = False
        return
    base.trainable = True
    encoder = bert_encoder.encoder_layer(base)
    if encoder is not None:  # one Keras layer: its transformer blocks are counted instead
        encoder.first_block = bert_encoder.first_block_for(encoder, stage)
        return
    first = first_trainable_layer(base, stage, backbone)
    for layer in base.layers[:first]:
        layer.trainable = False


def load_weights_only(model: keras.Model, path: str) -> None:
    """The model's weights from a TensorFlow checkpoint (save_weights, or a SavedModel's
    variables), every one matched, and not its optimizer. Keras restores a checkpoint's
    optimizer too, deferred until the model next gets one, so the next stage's fresh optimizer
    took the old learning rate, step count and moments (measured: a 1e-9 stage stepped at the
    saved 0.002). TensorFlow keeps a deferred restoration per child name not yet on the model;
    all are dropped: the optimizer's, and any other object the checkpoint holds (a served
    model's Transform layer, whose old vocabulary would otherwise land on the next one
    attached under that name)."""
    status = model.load_weights(path)
    status.assert_existing_objects_matched()
    status.expect_partial()  # the optimizer's values stay unread, on purpose
    model._deferred_dependencies.clear()
