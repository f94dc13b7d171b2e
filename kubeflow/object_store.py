"""A bucket as KFP's launcher sees it: objects listed by raw key prefix, and the zero-byte
`dir/` marker objects TensorFlow's GCS client writes on every makedirs.

S3 and MinIO through boto3 (endpoint and credentials from the environment: S3_ENDPOINT,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), GCS through google-cloud-storage.
"""

from __future__ import annotations

import os

from components import files

SCHEMES = ("gs://", "s3://", "minio://")


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of an object-store URI."""
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise ValueError(f"{uri}: not an object-store URI ({', '.join(SCHEMES)})")
    bucket, _, key = uri[len(scheme) :].partition("/")
    return scheme, bucket, key


def _s3():
    import boto3

    return boto3.client("s3", endpoint_url=files.s3_endpoint_url(), region_name=os.environ.get("AWS_REGION"))


def list_objects(uri: str) -> list[tuple[str, int]]:
    """(key, size) of every object whose key starts with the URI's key, in the store's (lexical)
    order: the raw-prefix listing of KFP's launcher 2.0-2.3."""
    scheme, bucket, key = split(uri)
    if scheme == "gs://":
        from google.cloud import storage

        return [(blob.name, blob.size or 0) for blob in storage.Client().list_blobs(bucket, prefix=key)]
    found = []
    for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        found += [(item["Key"], item["Size"]) for item in page.get("Contents", [])]
    return found


def _delete(uri: str, keys: list[str]) -> None:
    scheme, bucket, _ = split(uri)
    if scheme == "gs://":
        from google.cloud import storage

        target = storage.Client().bucket(bucket)
        for key in keys:
            target.blob(key).delete()
        return
    client = _s3()
    for start in range(0, len(keys), 1000):  # S3's batch limit
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})


def remove_directory_markers(uri: str) -> list[str]:
    """Deletes the zero-byte `dir/` marker objects at and under the folder `uri` that have
    objects beneath them (the folder exists without them: its objects' keys say so; an empty
    folder's marker is kept, since nothing else says it exists). KFP's launcher 2.0-2.3 and later
    (kubeflow/pipelines#13476) download a marker as a file, and then fail on the first object
    under it ("not a directory"): every task reading such an artifact would fail. Returns the keys
    deleted."""
    _, _, key = split(uri)
    folder = key.rstrip("/") + "/"
    objects = sorted(list_objects(uri.rstrip("/") + "/"))
    # In key order an object under a marker comes right after it.
    markers = [
        k
        for i, (k, size) in enumerate(objects)
        if k.endswith("/")
        and size == 0
        and k.startswith(folder)
        and i + 1 < len(objects)
        and objects[i + 1][0].startswith(k)
    ]
    if markers:
        _delete(uri, markers)
    return markers
