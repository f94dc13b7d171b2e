"""s3:// (S3, and MinIO: Kubeflow's own artifact store, `minio://` in KFP's terms) for the serving
directory, against a real S3 server started here (moto's, on a free loopback port): versions
published whole, rolled back, pruned; `graft predict`, `rollback` and `history` reading it; and
every process that touched S3 exiting with its own status.

Everything that touches S3 runs in a subprocess: tensorflow-io's S3 filesystem aborts the
interpreter at its exit, which must not happen to a pytest worker.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, S3_BUCKET, encode, export_tiny_image_model, random_image

pytestmark = pytest.mark.slow  # exports a model and starts processes that load TensorFlow

BUCKET = S3_BUCKET


def keys(client, prefix: str) -> list:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def python(env, script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


_USE_S3_THEN_EXIT = """
import sys
from components import files
files.listdir("s3://graft-test/")
files.exit_process(int(sys.argv[1]))
"""


def test_a_process_that_used_s3_exits_with_its_own_status(s3):
    """After S3 use, the AWS SDK's teardown at interpreter exit aborted the process ("pure
    virtual method called", exit 134) however the run went: Graft's entry points end through
    files.exit_process, which keeps the status."""
    env, _ = s3
    for status in (0, 3):
        result = python(env, _USE_S3_THEN_EXIT, str(status))
        assert result.returncode == status, result.stderr[-2000:]
        assert "pure virtual method called" not in result.stderr


_PUBLISH = """
import json, sys
from components import files
from components.serving import serving_dir
model, serving = sys.argv[1], sys.argv[2]
first = serving_dir.publish(model, serving, source="first")
second = serving_dir.publish(model, serving, source="second")
print(json.dumps({"first": first, "second": second, "versions": serving_dir.versions(serving)}))
files.exit_process(0)  # a plain exit aborts after S3 use (see the test above)
"""


def test_versions_on_s3_are_published_whole_and_graft_reads_them(s3, tmp_path):
    env, client = s3
    model = export_tiny_image_model(str(tmp_path / "model"), ["cat", "dog"])
    serving = f"s3://{BUCKET}/serving"
    # Published twice: two numbered versions, each whole, no staging copy left behind.
    result = python(env, _PUBLISH, model, serving)
    assert result.returncode == 0, result.stderr[-3000:]
    published = json.loads(result.stdout.strip().splitlines()[-1])
    first, second = (int(published[k].rsplit("/", 1)[-1]) for k in ("first", "second"))
    assert published["versions"] == [first, second] and second > first
    stored = keys(client, "serving/")
    for version in (first, second):
        assert f"serving/{version}/saved_model.pb" in stored
        assert f"serving/{version}/variables/variables.index" in stored
    assert not [k for k in stored if "/.incoming-" in k], stored

    # graft predict answers from it, named as KFP names its store (minio://).
    image = tmp_path / "a.png"
    image.write_bytes(encode(random_image(40, 40), "PNG"))
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    predicted = subprocess.run(
        [graft, "predict", "--serving-dir", f"minio://{BUCKET}/serving", str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    [answer] = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert answer["class_name"] in ("cat", "dog") and 0 <= answer["probability"] <= 1, answer

    # graft rollback: the first version again, as a new number; graft history lists all three.
    rolled = subprocess.run(
        [graft, "rollback", "--serving-dir", serving, "--to", str(first)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    history = subprocess.run(
        [graft, "history", "--serving-dir", serving, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert history.returncode == 0, history.stderr[-3000:]
    rows = json.loads(history.stdout)
    assert len(rows) == 3 and sum(1 for k in keys(client, "serving/") if k.endswith("/saved_model.pb")) == 3


# A Trainer's model output on a bucket, and its sibling (TFX's model_run), as TensorFlow's GCS
# client leaves them: every folder made with makedirs also holds a zero-byte `folder/` object.
MODEL_FILES = (
    "saved_model.pb",
    "variables/variables.index",
    "variables/variables.data-00000-of-00001",
    "fingerprint.pb",
)
GCS_MARKERS = (
    "run/Trainer/model/",
    "run/Trainer/model/variables/",
    "run/Trainer/model/assets/",
    "run/Trainer/model_run/",
)


def _gcs_layout(client, prefix: str) -> str:
    for name in MODEL_FILES:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}run/Trainer/model/{name}", Body=b"x")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}run/Trainer/model_run/events.out", Body=b"x")
    for marker in GCS_MARKERS:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}{marker}", Body=b"")
    return f"s3://{BUCKET}/{prefix}run/Trainer/model"


def test_the_launchers_download_fails_on_marker_objects_and_passes_once_the_executor_removed_them(
    s3, tmp_path, monkeypatch
):
    """KFP's launcher (2.0-2.3, and later: kubeflow/pipelines#13476) downloads every input before a
    task's command: a `model/` marker becomes a file and the first object under it then fails, so
    every task after the Trainer would fail. Graft's entrypoint removes the markers under its
    outputs after the executor (those of empty folders stay: nothing else says they exist)."""
    from kubeflow import kfp_entrypoint, launcher, object_store

    env, client = s3
    for name in ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(name, env[name])
    model = _gcs_layout(client, "a/")
    with pytest.raises(launcher.DownloadFailed, match=r'directory ".*/Trainer/model": mkdir .*/model: not a directory'):
        launcher.download(model, str(tmp_path / "before"))

    # What the entrypoint runs after the Trainer's executor, on its outputs (model and model_run:
    # the raw prefix lists the sibling's marker too, which would fail the model's download alike).
    outputs = {"model": {"artifacts": [{"uri": model}]}, "model_run": {"artifacts": [{"uri": f"{model}_run"}]}}
    kfp_entrypoint.remove_markers(json.dumps({"outputs": {"artifacts": outputs}}))
    left = keys(client, "a/run/Trainer/")
    assert not {"a/run/Trainer/model/", "a/run/Trainer/model/variables/", "a/run/Trainer/model_run/"} & set(left)
    assert "a/run/Trainer/model/assets/" in left  # an empty folder keeps its marker
    assert all(f"a/run/Trainer/model/{name}" in left for name in MODEL_FILES)

    local = launcher.download(model, str(tmp_path / "after"))
    assert local == str(tmp_path / "after" / "s3" / BUCKET / "a/run/Trainer/model")
    assert all(os.path.isfile(os.path.join(local, name)) for name in MODEL_FILES)
    # The raw prefix also pulls in the sibling model_run, written beside the model (2.0-2.3).
    assert os.path.isfile(os.path.join(os.path.dirname(local), "model_run", "events.out"))
    assert object_store.remove_directory_markers(model) == []  # nothing left to remove
