"""A local S3 server for the tests and benchmarks that need an object store: moto's, on a free
loopback port (standing in for S3, and for MinIO, the store open-source Kubeflow ships)."""

from __future__ import annotations

import glob
import io
import logging
import os
import socket
from contextlib import contextmanager


@contextmanager
def local_s3(bucket: str):
    """Starts the server with `bucket` in it; yields (the environment a process needs to reach it,
    a boto3 client); stops it after."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a log line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "graft", "AWS_SECRET_ACCESS_KEY": "graft", "AWS_REGION": "us-east-1"}
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="graft", aws_secret_access_key="graft"
    )
    client.create_bucket(Bucket=bucket)
    env = {
        **os.environ,
        **credentials,
        "S3_ENDPOINT": endpoint,
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    try:
        yield env, client
    finally:
        server.stop()


def upload_images(client, bucket: str, folder: str, prefix: str, files=None, change=None) -> str:
    """Copies class folders of PNGs (or `files` of them) under `prefix`, each image's pixels
    through `change` when given; returns the prefix's s3:// URI."""
    import numpy as np
    from PIL import Image

    for path in files or sorted(glob.glob(os.path.join(folder, "*", "*.png"))):
        with open(path, "rb") as f:
            data = f.read()
        if change:
            buffer = io.BytesIO()
            Image.fromarray(change(np.asarray(Image.open(path)))).save(buffer, format="PNG")
            data = buffer.getvalue()
        client.put_object(Bucket=bucket, Key=f"{prefix}/{os.path.relpath(path, folder)}", Body=data)
    return f"s3://{bucket}/{prefix}"
