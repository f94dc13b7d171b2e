"""KFP's launcher downloading a task's inputs, as open-source Kubeflow Pipelines 2.0-2.3 does it
before the task's command runs (backend/src/v2/component/launcher_v2.go `downloadArtifacts`,
objectstore/object_store.go `DownloadBlob`, `downloadFile`), for `graft kfp run-local`.

- The first artifact of each input is downloaded, whatever its type, when its URI is on an
  object store (gs:// to /gcs/, minio:// to /minio/, s3:// to /s3/); other URIs are skipped.
- Objects are listed by the artifact's key as a raw prefix: `.../model` also lists
  `.../model_run/...`, written to the sibling local path (`filepath.Rel` gives `../model_run/x`).
- Each object becomes one local file at the key relative to the prefix, Go's `filepath.Rel`
  cleaning both: a zero-byte marker `.../model/` becomes a file at `.../model`, and the next object
  under it fails (`mkdir ...: not a directory`), which fails the task before its command runs.

TFX's executors read and write the object store themselves (tf.io.gfile on the URIs in the
ExecutorInput): the download is unused work, but its failure is the task's.
"""

from __future__ import annotations

import os
import posixpath

from kubeflow import object_store

LOCAL_ROOTS = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}


class DownloadFailed(RuntimeError):
    pass


def download(uri: str, scratch_dir: str, list_objects=object_store.list_objects) -> str:
    """Downloads the artifact at `uri` under `scratch_dir` as the launcher would (names only: the
    files are created empty); returns its local path, or raises DownloadFailed with the
    launcher's message."""
    scheme, bucket, blob_dir = object_store.split(uri)
    local_dir = os.path.join(scratch_dir, LOCAL_ROOTS[scheme], bucket, blob_dir)
    for key, _ in list_objects(uri):
        target = os.path.normpath(os.path.join(local_dir, posixpath.relpath(key, blob_dir)))
        failed = f'failed to download input artifact from remote storage URI "{uri}": downloadFile(): unable to '
        failed += f'complete copying "{key}" to local storage "{target}"'
        parent = os.path.dirname(target)
        if os.path.exists(parent) and not os.path.isdir(parent):  # Go's os.MkdirAll: ENOTDIR
            raise DownloadFailed(
                f'{failed}: failed to create local directory "{parent}": mkdir {parent}: not a directory'
            )
        try:
            os.makedirs(parent, exist_ok=True)
            with open(target, "wb"):
                pass
        except OSError as error:
            raise DownloadFailed(f"{failed}: {error.strerror.lower()}") from error
    return local_dir


def downloads(uri: str) -> bool:
    """Whether the launcher downloads an artifact at `uri` (its scheme is an object store's)."""
    return uri.startswith(tuple(LOCAL_ROOTS))
