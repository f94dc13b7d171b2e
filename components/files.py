"""Files on a local disk or an object store (gs://, s3://, ...), one set of functions.

Local paths go through `os` (no TensorFlow import, so the command line's checks stay fast);
paths with a scheme go through tf.io.gfile, imported only then.
"""

from __future__ import annotations

import os


def _gfile(path: str):
    if "://" not in path:
        return None
    import tensorflow as tf

    return tf.io.gfile


def read(path: str) -> bytes:
    gfile = _gfile(path)
    with gfile.GFile(path, "rb") if gfile else open(path, "rb") as f:
        return f.read()


def exists(path: str) -> bool:
    gfile = _gfile(path)
    return gfile.exists(path) if gfile else os.path.exists(path)


def isdir(path: str) -> bool:
    gfile = _gfile(path)
    return gfile.isdir(path) if gfile else os.path.isdir(path)


def listdir(path: str) -> list[str]:
    """Entry names, sorted, without the trailing '/' object stores give folders."""
    gfile = _gfile(path)
    return sorted(n.rstrip("/") for n in (gfile.listdir(path) if gfile else os.listdir(path)))


def walk(path: str):
    gfile = _gfile(path)
    return gfile.walk(path) if gfile else os.walk(path)


def tfrecords(paths: list[str]):
    """A tf.data.TFRecordDataset of `paths`, GZIP when they end in .gz (TFX's and Beam's rule:
    ExampleGen writes text compressed, images not, and older runs' images compressed)."""
    import tensorflow as tf

    kinds = {path.endswith(".gz") for path in paths}
    if len(kinds) > 1:
        raise ValueError(f"some of these TFRecord files are compressed (.gz) and some not: {sorted(paths)[:4]}...")
    return tf.data.TFRecordDataset(paths, compression_type="GZIP" if kinds == {True} else "")
