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


def header_size(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(known format, width, height) of one encoded image (a scalar tf.string), from its header
    alone: width and height 0 when the format is not one serving decodes."""
    padded = tf.strings.substr(tf.strings.join([image_bytes, tf.constant(b"\0" * _HEADER_BYTES)]), 0, _HEADER_BYTES)
    raw = tf.io.decode_raw(padded, tf.uint8)

    def starts(magic: bytes) -> tf.Tensor:
        return tf.equal(tf.strings.substr(padded, 0, len(magic)), magic)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(image_bytes, output_type=tf.int64)
        return shape[1], shape[0]

    def bmp():
        width, height = _unsigned(raw, 18, 4, False), _unsigned(raw, 22, 4, False)
        # Signed 32-bit: a negative height is a top-down bitmap.
        return width, tf.where(height >= 2**31, 2**32 - height, height)

    zero = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    width, height = tf.case(
        [
            (starts(_PNG), lambda: (_unsigned(raw, 16, 4, True), _unsigned(raw, 20, 4, True))),
            (starts(_GIF), lambda: (_unsigned(raw, 6, 2, False), _unsigned(raw, 8, 2, False))),
            (starts(_BMP), bmp),
            (starts(_JPEG), jpeg),
        ],
        default=lambda: zero,
        exclusive=True,
    )
    known = starts(_PNG) | starts(_GIF) | starts(_BMP) | starts(_JPEG)
    return known, width, height


def check_image(image_bytes: tf.Tensor, max_pixels: int) -> tf.Operation:
    """An assertion on one encoded image: a format serving decodes, at most `max_pixels` pixels
    by its header. Failing, the request fails with a message naming the limit (TF Serving
    returns it to the client) before any pixel is decoded."""
    known, width, height = header_size(image_bytes)
    format_ok = tf.debugging.Assert(known, [f"not an image serving decodes ({FORMATS}) by its first bytes"])
    with tf.control_dependencies([format_ok]):
        message = tf.strings.format(
            "image too large: {}x{} pixels by its header, over max_image_pixels="
            + f"{max_pixels:,} (the limit the model was trained with)",
            (width, height),
        )
        return tf.debugging.Assert(width * height <= max_pixels, [message])
