"""A small backbone pretrained here on one task, because ImageNet weights cannot be downloaded:
the transfer test and `make bench` give its weights file to the pipeline as users give theirs."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tf_keras as keras
from PIL import Image
from sklearn.datasets import load_digits

from components.backbones.preprocessing import preprocess_image_bytes
from components.trainer.model import backbone_of, build_model
from components.trainer.stages import Stage
from components.trainer.training import TrainingOptions, train_stages
from tests.conftest import encode, tiny_trainer_settings


def digit_pixels(image) -> np.ndarray:
    """scikit-learn's 0-16 digit image -> 0-255 grey pixels."""
    return np.round(image * (255.0 / 16.0)).astype(np.uint8)


def pretrain_backbone(path: str, indices, image_size: int = 32, epochs: int = 10) -> float:
    """Trains the slim MobileNetV2 (alpha 0.35) from scratch to tell the digits at `indices`
    apart (their labels renumbered from 0); saves the backbone's weights to `path` (a Keras
    weights file, as users pass ImageNet's); returns its held-out accuracy."""
    keras.utils.set_random_seed(0)
    digits = load_digits()
    indices = list(indices)
    classes = sorted(set(digits.target[indices]))
    labels = np.array([classes.index(digits.target[i]) for i in indices])
    pngs = [encode(digit_pixels(digits.images[i]), "PNG") for i in indices]
    images = preprocess_image_bytes(tf.constant(pngs), "mobilenet_v2", image_size)
    cut = int(0.85 * len(indices))
    train = tf.data.Dataset.from_tensor_slices((images[:cut], labels[:cut])).shuffle(cut, seed=0).batch(32)
    held_out = tf.data.Dataset.from_tensor_slices((images[cut:], labels[cut:])).batch(64)
    settings = tiny_trainer_settings(
        backbone="mobilenet_v2", image_size=image_size, train_batchnorm=True, batchnorm_momentum=0.9
    )
    model = build_model(settings, len(classes))
    steps = -(-cut // 32)
    history = train_stages(
        model, [Stage("pretrain", epochs, "all", 0.002)], train, held_out, TrainingOptions(settings, steps)
    )
    backbone_of(model).save_weights(path)
    return history[-1]["val_accuracy"]


def write_digit_folders(root: str, indices, name_of) -> int:
    """The digits at `indices` as PNG class folders `root/<name_of(digit)>/`; returns how many."""
    digits = load_digits()
    written = 0
    for i in indices:
        folder = os.path.join(root, name_of(int(digits.target[i])))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(digit_pixels(digits.images[i]), mode="L").save(os.path.join(folder, f"{i:04d}.png"))
        written += 1
    return written


# ---- text: a sentence encoder in TF Hub's format (strings in, one vector per text out) ----

TEXT_BUCKETS, TEXT_DIM = 4096, 32


def _encode(texts, embeddings):
    """Lower-cased words (punctuation split off), hashed into buckets, embedded, averaged."""
    words = tf.strings.split(tf.strings.regex_replace(tf.strings.lower(texts), r"([^\w\s'])", r" \1 "))
    vectors = tf.gather(embeddings, tf.strings.to_hash_bucket_fast(words, TEXT_BUCKETS))
    counts = tf.cast(tf.maximum(words.row_lengths(), 1), tf.float32)[:, None]
    return tf.reduce_sum(vectors, axis=1) / counts


class _SentenceEncoder(tf.__internal__.tracking.AutoTrackable):
    """TF Hub's sentence-encoder interface: tf.string [batch] -> float32 [batch, dim]; its
    embedding trains when the KerasLayer is trainable."""

    def __init__(self, embeddings):
        self.embeddings = tf.Variable(embeddings, name="embeddings")
        self.variables = [self.embeddings]
        self.trainable_variables = [self.embeddings]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts):
        return _encode(texts, self.embeddings)


class _EncoderLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.embeddings = self.add_weight(
            "embeddings", [TEXT_BUCKETS, TEXT_DIM], initializer=keras.initializers.RandomNormal(stddev=0.1)
        )

    def call(self, texts):
        return _encode(texts, self.embeddings)


def pretrain_sentence_encoder(path: str, texts: list, labels: list, epochs: int = 5) -> float:
    """Trains the encoder (with a throw-away head) on one text task; exports it to `path` as a
    TF Hub SavedModel, as users get them; returns its training accuracy. epochs=0: the same
    encoder untrained (random embeddings), the from-scratch twin."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((), dtype=tf.string)
    encoder = _EncoderLayer()
    outputs = keras.layers.Dense(len(set(labels)), activation="softmax")(encoder(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(len(texts), seed=0).batch(32)
    history = model.fit(data, epochs=epochs, verbose=0).history if epochs else {"accuracy": [0.0]}
    tf.saved_model.save(_SentenceEncoder(encoder.embeddings.numpy()), path)
    return history["accuracy"][-1]
