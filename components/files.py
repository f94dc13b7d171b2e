"""Files on a local disk or an object store (gs://, s3://, ...), one set of functions.

Local paths go through `os` (no TensorFlow import, so the command line's checks stay fast);
paths with a scheme go through tf.io.gfile, imported only then. TensorFlow reads s3:// (AWS S3,
MinIO: Kubeflow's own artifact store, `minio://` in KFP's terms) through tensorflow-io's
filesystem, registered here on the first such path (endpoint and credentials from the
environment: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_USE_HTTPS).
"""

from __future__ import annotations

import os
import sys

# KFP names its MinIO store minio://; TensorFlow (through tensorflow-io) reads it as s3://.
SCHEME_ALIASES = {"minio://": "s3://"}


def normalize(path):
    """`path` with an alias scheme replaced by the one TensorFlow reads (minio:// -> s3://)."""
    for alias, scheme in SCHEME_ALIASES.items():
        if isinstance(path, str) and path.startswith(alias):
            return scheme + path[len(alias) :]
    return path


def register(path) -> None:
    """Makes `path`'s filesystem known to TensorFlow in this process (s3://: tensorflow-io's)."""
    if isinstance(path, str) and path.startswith("s3://"):
        import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile on import)

        from components import beam_s3  # noqa: F401  (Beam's own S3 writes: empty files)


def s3_endpoint_url(endpoint: str | None = None, https: bool | None = None) -> str | None:
    """The S3 endpoint as a URL (what boto3 and Beam take), from tensorflow-io's form (host:port,
    S3_USE_HTTPS) or given; by default the environment's S3_ENDPOINT. None: AWS's own."""
    endpoint = endpoint or os.environ.get("S3_ENDPOINT")
    if not endpoint or "://" in endpoint:
        return endpoint or None
    if https is None:
        https = os.environ.get("S3_USE_HTTPS", "1") != "0"
    return f"{'https' if https else 'http'}://{endpoint}"


def exit_process(code: int) -> None:
    """Ends this process with `code`. Once tensorflow-io's S3 filesystem was used, the AWS SDK's
    teardown at interpreter exit aborts ("pure virtual method called": exit 134 after a run that
    succeeded, which Kubeflow and schedulers read as a failure); that teardown is then skipped,
    after flushing what Python holds."""
    if "tensorflow_io" not in sys.modules:
        sys.exit(code)
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _gfile(path: str):
    if "://" not in path:
        return None
    register(path)
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
