"""An image's size read from its header, in the graph, before anything is decoded: one request
declaring a 20,000 x 20,000 PNG (a 1 MB file of zlib-compressed zeros) took 6.9 GB and 17 s to
decode in serving. JPEG through `tf.io.extract_jpeg_shape`; PNG, GIF and BMP from their fixed
header bytes. The limit is the model's `max_image_pixels` (ingestion's, recorded at training).
"""

from __future__ import annotations

import tensorflow as tf

_HEADER_BYTES = 32
_PNG, _GIF, _BMP, _JPEG = b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"\xff\xd8\xff"
FORMATS = "JPEG, PNG, GIF or BMP"


def _unsigned(raw: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
    """An unsigned integer of `size` bytes at `start` of uint8 `raw`, as int64."""
    value = tf.constant(0, tf.int64)
    for i in range(size):
        byte = tf.cast(raw[start + (i if big_endian else size - 1 - i)], tf.int64)
        value = value * 256 + byte
    return value


def is_jpeg(image_bytes: tf.Tensor) -> tf.Tensor:
    """Whether one encoded image (a scalar tf.string) starts with JPEG's magic bytes."""
    return _starts(image_bytes, _JPEG)


def _starts(image_bytes: tf.Tensor, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(image_bytes, 0, len(magic)), magic)


def _jpeg_size(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.io.extract_jpeg_shape(image_bytes, output_type=tf.int64)
    return shape[1], shape[0]


def _fixed_header_size(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(known format, width, height) of a PNG, GIF or BMP from its fixed header bytes; width and
    height 0 for any other format (JPEG included: see `_jpeg_size`)."""
    padded = tf.strings.substr(tf.strings.join([image_bytes, tf.constant(b"\0" * _HEADER_BYTES)]), 0, _HEADER_BYTES)
    raw = tf.io.decode_raw(padded, tf.uint8)

    def bmp():
        width, height = _unsigned(raw, 18, 4, False), _unsigned(raw, 22, 4, False)
        # Signed 32-bit: a negative height is a top-down bitmap.
        return width, tf.where(height >= 2**31, 2**32 - height, height)

    zero = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    png, gif, bmp_ = _starts(padded, _PNG), _starts(padded, _GIF), _starts(padded, _BMP)
    width, height = tf.case(
        [
            (png, lambda: (_unsigned(raw, 16, 4, True), _unsigned(raw, 20, 4, True))),
            (gif, lambda: (_unsigned(raw, 6, 2, False), _unsigned(raw, 8, 2, False))),
            (bmp_, bmp),
        ],
        default=lambda: zero,
        exclusive=True,
    )
    return png | gif | bmp_, width, height


def header_size(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(known format, width, height) of one encoded image (a scalar tf.string), from its header
    alone: width and height 0 when the format is not one serving decodes."""

    def jpeg():
        width, height = _jpeg_size(image_bytes)
        return tf.constant(True), width, height

    return tf.cond(is_jpeg(image_bytes), jpeg, lambda: _fixed_header_size(image_bytes))


def _refused(message) -> tf.Tensor:
    """False, after an assertion that fails with `message()`: built only on the refusing branch
    of a tf.cond, so an accepted image costs no string formatting (it was a fifth of decoding)."""
    with tf.control_dependencies([tf.debugging.Assert(False, [message()])]):
        return tf.constant(False)


def _accepted(ok: tf.Tensor, message) -> tf.Tensor:
    return tf.cond(ok, lambda: tf.constant(True), lambda: _refused(message))


def _within(width: tf.Tensor, height: tf.Tensor, max_pixels: int) -> tf.Tensor:
    def message():
        return tf.strings.format(
            "image too large: {}x{} pixels by its header, over max_image_pixels="
            + f"{max_pixels:,} (the limit the model was trained with)",
            (width, height),
        )

    return _accepted(width * height <= max_pixels, message)


def check_jpeg(image_bytes: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """The limit on one JPEG (its size from the frame header, `tf.io.extract_jpeg_shape`)."""
    return _within(*_jpeg_size(image_bytes), max_pixels)


def check_fixed_header(image_bytes: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """The checks on one image that is not a JPEG: a format serving decodes (PNG, GIF, BMP), at most
    `max_pixels` pixels by its header."""
    known, width, height = _fixed_header_size(image_bytes)
    with tf.control_dependencies(
        [_accepted(known, lambda: tf.constant(f"not an image serving decodes ({FORMATS}) by its first bytes"))]
    ):
        return _within(width, height, max_pixels)
