"""Encoded image bytes to the tensor a backbone expects: the one implementation.

The Transform preprocessing_fn and both serving signatures call `preprocess_image_bytes`, so
training and serving cannot drift apart. Decoding uses `tf.io.decode_image`, the decoder
that serving has, which is also the decoder ingestion uses to accept or quarantine a file; a
JPEG goes straight to `tf.io.decode_jpeg`, the same libjpeg decode (pixel-identical, tested)
without decode_image's format dispatch: 1.4x the images per second in the Trainer's input.
"""

from __future__ import annotations

import tensorflow as tf

from components.backbones import image_limits, registry

_IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)
_IMAGENET_RGB_MEANS = (0.485, 0.456, 0.406)
_IMAGENET_RGB_STDS = (0.229, 0.224, 0.225)


def decode_image(image_bytes: tf.Tensor, max_pixels: int | None = None) -> tf.Tensor:
    """One encoded image (JPEG, PNG, GIF's first frame, BMP) to uint8 RGB [h, w, 3]; with
    `max_pixels`, refused (InvalidArgumentError naming the limit) from its header, before any
    pixel is decoded, when it declares more pixels or is no format serving decodes."""

    def jpeg():
        checks = [image_limits.check_jpeg(image_bytes, max_pixels)] if max_pixels else []
        with tf.control_dependencies(checks):
            return tf.io.decode_jpeg(image_bytes, channels=3)

    def other():
        checks = [image_limits.check_fixed_header(image_bytes, max_pixels)] if max_pixels else []
        with tf.control_dependencies(checks):
            return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

    image = tf.cond(image_limits.is_jpeg(image_bytes), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [h, w, 3] to float32 [size, size, 3] in [0, 255], bilinear, aspect not kept
    (as keras' image_dataset_from_directory does by default)."""
    return tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size])


def scale_pixels(images: tf.Tensor, mode: str) -> tf.Tensor:
    """float32 pixels in [0, 255] (RGB) to the backbone's input range; `mode` as in keras."""
    if mode == "tf":
        return images / 127.5 - 1.0
    if mode == "caffe":
        return images[..., ::-1] - tf.constant(_IMAGENET_BGR_MEANS)
    if mode == "torch":
        return (images / 255.0 - tf.constant(_IMAGENET_RGB_MEANS)) / tf.constant(_IMAGENET_RGB_STDS)
    if mode == "unit":
        return images / 255.0
    if mode == "none":
        return images
    raise ValueError(f"unknown preprocessing mode {mode!r}; known: {registry.PREPROCESS_MODES}")


def preprocess_image_bytes(
    image_bytes: tf.Tensor, backbone, image_size: int | None = None, max_pixels: int | None = None
) -> tf.Tensor:
    """A batch of encoded images (tf.string [batch]) to float32 [batch, size, size, 3].

    `backbone` is a registry name or entry; `image_size` defaults to its default size;
    `max_pixels`: images declaring more are refused before decoding (see decode_image).
    """
    if isinstance(backbone, str):
        backbone = registry.get(backbone)
    size = image_size or backbone.default_size
    images = tf.map_fn(
        lambda b: resize(decode_image(b, max_pixels), size),
        tf.reshape(image_bytes, [-1]),
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
    )
    return scale_pixels(images, backbone.preprocess)
