"""The serving directory in TF Serving's layout: <serving_dir>/<numeric version>/saved_model.pb.

A version appears whole or not at all: it is copied under a hidden temporary name (which
TF Serving ignores) and renamed into place.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import tensorflow as tf

SOURCE_FILE = "graft_source.txt"  # inside assets.extra: the model artifact a version came from


def versions(serving_dir: str) -> list[int]:
    """Complete versions, oldest first."""
    if not tf.io.gfile.isdir(serving_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(serving_dir, name, "saved_model.pb")):
            found.append(int(name))
    return sorted(found)


def newest(serving_dir: str) -> Optional[str]:
    """Path of the version TF Serving serves (the highest number), or None."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


def fingerprint(model_dir: str) -> Optional[str]:
    """TF's SavedModel fingerprint: equal for byte-identical exports."""
    try:
        return tf.saved_model.experimental.read_fingerprint(model_dir).singleprint()
    except (tf.errors.NotFoundError, ValueError, FileNotFoundError):
        return None


def same_model(a: str, b: str) -> bool:
    fa, fb = fingerprint(a), fingerprint(b)
    return fa is not None and fa == fb


def copy_tree(src: str, dst: str) -> None:
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(dirpath, src))
        tf.io.gfile.makedirs(target)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)


def publish(model_dir: str, serving_dir: str, source: str = "") -> str:
    """Copies `model_dir` in as a new version, atomically; returns the version's path."""
    tf.io.gfile.makedirs(serving_dir)
    existing = versions(serving_dir)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    staging = os.path.join(serving_dir, f".incoming-{version}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)  # left by a push that was killed mid-copy
    copy_tree(model_dir, staging)
    if source:
        tf.io.gfile.makedirs(os.path.join(staging, "assets.extra"))
        with tf.io.gfile.GFile(os.path.join(staging, "assets.extra", SOURCE_FILE), "w") as f:
            f.write(source)
    final = os.path.join(serving_dir, str(version))
    tf.io.gfile.rename(staging, final)
    return final
