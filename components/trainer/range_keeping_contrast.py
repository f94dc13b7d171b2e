"""Random contrast that keeps whatever value range the backbone's preprocessing produced.

Augmentation runs on batches the Transform graph has already normalised ([-1, 1] for 'tf',
mean-subtracted BGR for 'caffe', standardised for 'torch', [0, 1] for 'unit'). tf_keras 2.16's
RandomContrast clips its output to [0, 255], which turns every negative value into 0, in
training only: the model would learn on inputs serving never sends.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


class RangeKeepingContrast(keras.layers.Layer):
    """(x - mean) * f + mean per image and channel, f uniform in [1 - factor, 1 + factor]; no
    clipping, identity outside training."""

    def __init__(self, factor: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.seed = float(factor), seed

    def call(self, images, training=None):
        if not training:
            return images
        shape = tf.stack([tf.shape(images)[0], 1, 1, 1])
        scale = tf.random.uniform(shape, 1.0 - self.factor, 1.0 + self.factor, seed=self.seed)
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        return (images - mean) * scale + mean

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}
