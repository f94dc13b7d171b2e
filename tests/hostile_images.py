"""Small files that declare huge images (decompression bombs), made here: a PNG whose pixels are a
valid zlib stream of zeros, and JPEG, GIF and BMP headers that declare the size."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, full: bool = True) -> bytes:
    """A greyscale PNG of `width` x `height` zeros: decodable (`full`: every row in the stream, a
    file of about a thousandth of the pixels) or the header and a first row only."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    stream = b"".join(compressor.compress(row) for _ in range(height if full else 1)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int, full: bool = False) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare `width` x `height`, or
    (`full`) a whole decodable grey JPEG of that size (seconds and 4 bytes a pixel to make)."""
    buffer = io.BytesIO()
    if full:
        Image.new("L", (width, height), 128).save(buffer, format="JPEG", quality=10)
        return buffer.getvalue()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb(width: int, height: int, full: bool = False) -> bytes:
    """A GIF whose logical screen and one frame declare `width` x `height` (at most 65,535 each),
    or (`full`) a whole decodable one of zeros."""
    buffer = io.BytesIO()
    if full:
        Image.new("L", (width, height), 0).save(buffer, format="GIF")
        return buffer.getvalue()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    at = data.index(b"\x2c")  # the image descriptor
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_bomb(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring `width` x `height`, with 64 bytes of pixels."""
    pixels = b"\0" * 64
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info)) + info + pixels


BOMBS = {"png": png_bomb, "jpeg": jpeg_bomb, "gif": gif_bomb, "bmp": bmp_bomb}
