"""The serving directory in TF Serving's layout: <serving_dir>/<numeric version>/saved_model.pb.

A version appears whole or not at all: it is copied under a hidden temporary name (which
TF Serving ignores) and renamed into place.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from components.contract import EXTRA_DIR, SAVED_MODEL_FILE, SOURCE_FILE


def versions(serving_dir: str) -> list[int]:
    """Complete versions, oldest first. (Local folders are read without TensorFlow, so the
    pre-flight checks stay fast.)"""
    if "://" in serving_dir:
        import tensorflow as tf

        isdir, listdir, exists = tf.io.gfile.isdir, tf.io.gfile.listdir, tf.io.gfile.exists
    else:
        isdir, listdir, exists = os.path.isdir, os.listdir, os.path.exists
    if not isdir(serving_dir):
        return []
    found = []
    for name in listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and exists(os.path.join(serving_dir, name, SAVED_MODEL_FILE)):
            found.append(int(name))
    return sorted(found)


def newest(serving_dir: str) -> Optional[str]:
    """Path of the version TF Serving serves (the highest number), or None."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


def fingerprint(model_dir: str) -> Optional[str]:
    """TF's SavedModel fingerprint: equal for byte-identical exports."""
    import tensorflow as tf

    try:
        return tf.saved_model.experimental.read_fingerprint(model_dir).singleprint()
    except (tf.errors.NotFoundError, ValueError, FileNotFoundError):
        return None


def same_model(a: str, b: str) -> bool:
    fa, fb = fingerprint(a), fingerprint(b)
    return fa is not None and fa == fb


def copy_tree(src: str, dst: str) -> None:
    import tensorflow as tf

    for dirpath, _, filenames in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(dirpath, src))
        tf.io.gfile.makedirs(target)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)


def publish(model_dir: str, serving_dir: str, source: str = "", check=None) -> str:
    """Copies `model_dir` in as a new version, atomically; returns the version's path.

    `check(staged_dir)`, when given, runs on the complete copy before it becomes visible; if
    it raises, the copy is removed and serving is left as it was."""
    import tensorflow as tf

    tf.io.gfile.makedirs(serving_dir)
    existing = versions(serving_dir)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    staging = os.path.join(serving_dir, f".incoming-{version}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)  # left by a push that was killed mid-copy
    copy_tree(model_dir, staging)
    if source:
        tf.io.gfile.makedirs(os.path.join(staging, EXTRA_DIR))
        with tf.io.gfile.GFile(os.path.join(staging, EXTRA_DIR, SOURCE_FILE), "w") as f:
            f.write(source)
    if check is not None:
        try:
            check(staging)
        except BaseException:
            tf.io.gfile.rmtree(staging)
            raise
    final = os.path.join(serving_dir, str(version))
    tf.io.gfile.rename(staging, final)
    return final


def prune(serving_dir: str, keep: int) -> list[int]:
    """Deletes all but the newest `keep` versions; the newest (serving) is always kept."""
    import tensorflow as tf

    found = versions(serving_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for version in doomed:
        tf.io.gfile.rmtree(os.path.join(serving_dir, str(version)))
    return doomed


def rollback(serving_dir: str, to_version: Optional[int] = None) -> str:
    """Makes an earlier version the newest again (as a new version number, so TF Serving
    switches to it); by default the one before the newest. Returns the new version's path."""
    found = versions(serving_dir)
    if to_version is None:
        if len(found) < 2:
            raise ValueError(f"{serving_dir}: no earlier version to roll back to (versions: {found})")
        to_version = found[-2]
    if to_version not in found:
        raise ValueError(f"{serving_dir}: no version {to_version} (versions: {found})")
    return publish(os.path.join(serving_dir, str(to_version)), serving_dir, source=f"rollback to {to_version}")
