"""One hostile request cannot take serving down: an image declaring more pixels than the model's
max_image_pixels (or no format serving decodes) is refused from its header by every signature,
and by graft predict, before any pixel is decoded; an image at the limit still classifies."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, encode, export_tiny_image_model, random_image
from tests.hostile_images import BOMBS, png_bomb

pytestmark = pytest.mark.slow  # every test here trains or exports a model

LIMIT = 64 * 64  # the test model's max_image_pixels: a 64 x 64 image is at the limit
SIZE = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    model_dir = export_tiny_image_model(str(root / "serving" / "1"), ["a", "b"], max_image_pixels=LIMIT)
    files = {"at_limit.png": encode(random_image(64, 64), "PNG"), "over_limit.png": encode(random_image(64, 65), "PNG")}
    files.update({f"bomb.{name}": make(20_000, 20_000) for name, make in BOMBS.items()})
    files["decodable_bomb.png"] = png_bomb(20_000, 20_000)  # every row there: 400 MB of pixels once decoded
    files["not_an_image.webp"] = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 32
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {"dir": model_dir, "root": root, "files": sorted(files)}


_CALLS = r"""
import json, resource, sys, time
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
def example(data):
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
calls = {
    "serving_image_bytes": lambda data: model.signatures["serving_image_bytes"](image_bytes=tf.constant([data])),
    "serving_default": lambda data: model.signatures["serving_default"](examples=tf.constant([example(data)])),
}
warm = open(sys.argv[2], "rb").read()
for call in calls.values():
    call(warm)
results = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    for name, call in calls.items():
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.time()
        try:
            answer = "classified: " + call(data)["class_name"].numpy()[0].decode()
        except tf.errors.InvalidArgumentError as err:
            answer = "refused: " + err.message.split("assertion failed: [")[-1].split("]")[0]
        extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        results[f"{path.rsplit('/', 1)[-1]} {name}"] = [answer, round(time.time() - started, 3), round(extra_mb)]
print(json.dumps(results))
"""


def test_every_signature_refuses_an_image_over_the_limit_from_its_header(served):
    paths = [
        str(served["root"] / name) for name in ["at_limit.png"] + [n for n in served["files"] if n != "at_limit.png"]
    ]
    result = subprocess.run(
        [sys.executable, "-c", _CALLS, served["dir"], *paths], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout.splitlines()[-1])
    print("\n| file | signature | answer | seconds | extra MB |\n|---|---|---|---|---|")
    for key, (answer, seconds, extra) in outcomes.items():
        print(f"| {key.replace(' ', ' | ')} | {answer} | {seconds} | {extra} |")
    for signature in ("serving_image_bytes", "serving_default"):
        assert outcomes[f"at_limit.png {signature}"][0].startswith("classified: ")
        over = outcomes[f"over_limit.png {signature}"][0]
        assert (
            over
            == "refused: image too large: 65x64 pixels by its header, over max_image_pixels=4,096 (the limit the model was trained with)"
        )
        for name in ("bomb.png", "bomb.jpeg", "bomb.gif", "bomb.bmp", "decodable_bomb.png"):
            answer, seconds, extra_mb = outcomes[f"{name} {signature}"]
            assert answer.startswith("refused: image too large: 20000x20000 pixels by its header"), (name, answer)
            assert seconds < 1.0 and extra_mb < 200, (name, seconds, extra_mb)
        assert outcomes[f"not_an_image.webp {signature}"][0].startswith("refused: not an image serving decodes")


def test_graft_predict_refuses_by_the_header_and_exits_non_zero(served):
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    result = subprocess.run(
        [graft, "predict", "--serving-dir", os.path.dirname(served["dir"]), str(served["root"])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    rows = {os.path.basename(r["path"]): r for r in map(json.loads, result.stdout.splitlines())}
    assert result.returncode == 1 and "inputs could not be classified" in result.stderr
    assert rows["at_limit.png"]["class_name"] in ("a", "b")
    assert (
        rows["bomb.png"]["error"]
        == "refused: 20000x20000 pixels by its header, over the model's max_image_pixels 4,096"
    )
    assert rows["over_limit.png"]["error"].startswith("refused: 65x64 pixels")
    assert "not_an_image.webp" not in rows  # not an image file name: folders give images only


def test_the_device_path_applies_the_limit_too():
    from components.serving.tflite_model import client_pixels

    assert client_pixels(encode(random_image(64, 64), "PNG"), SIZE, LIMIT).shape == (SIZE, SIZE, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="over max_image_pixels=4,096"):
        client_pixels(png_bomb(20_000, 20_000, full=False), SIZE, LIMIT)
    assert np.isfinite(client_pixels(encode(random_image(8, 8), "BMP"), SIZE, LIMIT)).all()
