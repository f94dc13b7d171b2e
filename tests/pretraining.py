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
    settings = tiny_trainer_settings(image_size=image_size, train_batchnorm=True, batchnorm_momentum=0.9)
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
