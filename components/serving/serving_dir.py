"""The serving directory in TF Serving's layout: <serving_dir>/<numeric version>/saved_model.pb.

A version appears whole or not at all: it is copied under a hidden staging name (which TF
Serving ignores), checked, then renamed into place locally or, on an object store (where a
rename is a copy), copied with saved_model.pb last.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Optional

from components import files
from components.contract import EXTRA_DIR, SAVED_MODEL_FILE, SOURCE_FILE

STAGING_PREFIX = ".incoming-"
_register = files.register


def versions(serving_dir: str) -> list[int]:
    """Complete versions, oldest first. (Local folders are read without TensorFlow, so the
    pre-flight checks stay fast.)"""
    if not files.isdir(serving_dir):
        return []
    found = []
    for name in files.listdir(serving_dir):
        if name.isdigit() and files.exists(os.path.join(serving_dir, name, SAVED_MODEL_FILE)):
            found.append(int(name))
    return sorted(found)


def read_extra_json(version_dir: str, name: str):
    """A JSON file from a version's assets.extra (class names, serving-check data), or None;
    on an object store too."""
    path = os.path.join(version_dir, EXTRA_DIR, name)
    return json.loads(files.read(path).decode("utf-8")) if files.exists(path) else None


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


def copy_tree(src: str, dst: str, last: str = "") -> None:
    """Copies the tree at `src` to `dst`; the top-level file named `last`, if any, is copied
    after everything else."""
    import tensorflow as tf

    files.register(src)
    files.register(dst)
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        relative = os.path.relpath(dirpath, src)
        target = dst if relative == "." else os.path.join(dst, relative)
        tf.io.gfile.makedirs(target)
        for name in filenames:
            if not (last and name == last and target == dst):
                tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)
    if last and tf.io.gfile.exists(os.path.join(src, last)):
        tf.io.gfile.copy(os.path.join(src, last), os.path.join(dst, last), overwrite=True)


def _numbered(serving_dir: str) -> list[int]:
    """Every numeric folder name, complete or not: a number is never reused."""
    import tensorflow as tf

    files.register(serving_dir)
    return [int(n.rstrip("/")) for n in tf.io.gfile.listdir(serving_dir) if n.rstrip("/").isdigit()]


def _next_version(serving_dir: str) -> int:
    taken = _numbered(serving_dir)
    return max(int(time.time()), max(taken) + 1 if taken else 0)


def _claim_version(staging: str, serving_dir: str) -> str:
    """Makes the complete, checked copy at `staging` a version; returns its path.

    Locally a rename is atomic, and fails when a concurrent push took the same number first,
    so the loser takes the next number. On an object store a "rename" is a copy, file by
    file, so the version is written in place with saved_model.pb last: TF Serving loads a
    version only once saved_model.pb is there, and `versions()` counts only such folders."""
    import tensorflow as tf

    for _ in range(100):
        final = os.path.join(serving_dir, str(_next_version(serving_dir)))
        if "://" not in serving_dir:
            try:
                os.rename(staging, final)
                return final
            except OSError:
                if os.path.exists(final):
                    continue  # a concurrent push took this number
                raise
        if tf.io.gfile.exists(final):
            continue
        copy_tree(staging, final, last=SAVED_MODEL_FILE)
        return final
    raise RuntimeError(f"{serving_dir}: could not claim a version number")


def publish(model_dir: str, serving_dir: str, source: str = "", check=None, files: Optional[dict] = None) -> str:
    """Copies `model_dir` in as a new version; returns the version's path. Only complete versions
    ever become visible: the copy is staged under a hidden name unique to this push (TF Serving
    ignores it; concurrent pushes never share it), checked, then claimed as a version.

    `check(staged_dir)`, when given, runs on the complete copy before it becomes visible; if
    it raises, the copy is removed and serving is left as it was. `files` ({name: text}) are
    written into the copy's root first (the provenance record), so they arrive with it."""
    import tensorflow as tf

    _register(serving_dir)  # (`files` is a parameter here)
    tf.io.gfile.makedirs(serving_dir)
    staging = os.path.join(serving_dir, f"{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:12]}")
    try:
        copy_tree(model_dir, staging)
        if source:
            tf.io.gfile.makedirs(os.path.join(staging, EXTRA_DIR))
            with tf.io.gfile.GFile(os.path.join(staging, EXTRA_DIR, SOURCE_FILE), "w") as f:
                f.write(source)
        for name, text in (files or {}).items():
            with tf.io.gfile.GFile(os.path.join(staging, name), "w") as f:
                f.write(text)
        if check is not None:
            check(staging)
        return _claim_version(staging, serving_dir)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)


def prune(serving_dir: str, keep: int, stale_staging_seconds: int = 24 * 3600) -> list[int]:
    """Deletes all but the newest `keep` versions (the newest, serving, is always kept) and the
    staging copies that killed pushes left behind more than `stale_staging_seconds` ago."""
    import tensorflow as tf

    files.register(serving_dir)
    found = versions(serving_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for version in doomed:
        tf.io.gfile.rmtree(os.path.join(serving_dir, str(version)))
    for name in tf.io.gfile.listdir(serving_dir):
        started = name.rstrip("/")[len(STAGING_PREFIX) :].split("-", 1)[0]
        if name.startswith(STAGING_PREFIX) and started.isdigit() and time.time() - int(started) > stale_staging_seconds:
            tf.io.gfile.rmtree(os.path.join(serving_dir, name.rstrip("/")))
    return doomed


def rollback(serving_dir: str, to_version: Optional[int] = None, files_for=None) -> str:
    """Makes an earlier version the newest again (as a new version number, so TF Serving
    switches to it); by default the one before the newest. Returns the new version's path.
    `files_for(restored_dir, to_version, replaced_dir)` gives files for the copy (see publish)."""
    found = versions(serving_dir)
    if to_version is None:
        if len(found) < 2:
            raise ValueError(f"{serving_dir}: no earlier version to roll back to (versions: {found})")
        to_version = found[-2]
    if to_version not in found:
        raise ValueError(f"{serving_dir}: no version {to_version} (versions: {found})")
    restored = os.path.join(serving_dir, str(to_version))
    files = files_for(restored, to_version, newest(serving_dir)) if files_for else None
    return publish(restored, serving_dir, source=f"rollback to {to_version}", files=files)
