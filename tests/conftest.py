"""Shared fixtures: real image files written by the tests themselves (no network)."""

import io
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    """The modules that run pipelines first, then those that train models, then the rest.
    `make test` hands each module whole to one worker (--dist loadfile: a module's fixtures,
    such as a pretrained encoder, are built once), in this order: the longest work starts
    first, and the suite does not end with one worker running a pipeline while the other idles."""

    def rank(item) -> int:
        return 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2

    module_rank = {}
    for item in items:
        module_rank[item.fspath] = min(module_rank.get(item.fspath, 2), rank(item))
    items.sort(key=lambda item: module_rank[item.fspath])  # stable: a module's own order is kept


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    """uint8 image array -> encoded bytes in `fmt` (PNG, JPEG, GIF, BMP, ...), via Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def random_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A small real dataset: 3 digit classes of scikit-learn's digits as PNG class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        if label not in (0, 1, 7):
            continue
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    return str(root)


def write_digit_pngs(root, classes: dict, per_class: int) -> list:
    """Writes `per_class` real digit images for each {folder name: digit}; returns the paths."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for folder, digit in classes.items():
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        picked = [i for i, t in enumerate(digits.target) if t == digit][:per_class]
        for i in picked:
            path = os.path.join(root, folder, f"{i:04d}.png")
            Image.fromarray(np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8), mode="L").save(path)
            paths.append(path)
    return paths


def run_graft(tmp_path, config: dict, name: str = "run", expect_rc: int = 0, env: dict | None = None):
    """Runs local_runner.py with `config` in a process of its own (the real CLI, forked from one
    that imported the stack once: tests/forked_cli.py; a fresh interpreter where the config's
    runtime environment must be set before TensorFlow loads); returns (summary dict or None,
    its stdout and stderr)."""
    import json
    import subprocess
    import sys

    import yaml

    from pipeline.config import ConfigError, load_config
    from tests import forked_cli

    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    summary_path = tmp_path / f"{name}.json"
    output_path = tmp_path / f"{name}.out"
    args = ["--config", str(config_path), "--summary-json", str(summary_path)]
    run_env = {**os.environ, **(env or {})}
    try:
        fresh = bool(load_config(str(config_path), {}).runtime_env)
    except ConfigError:  # refused by the CLI before TensorFlow loads: either way does
        fresh = False
    if fresh:
        with open(output_path, "w") as out:
            rc = subprocess.run(
                [sys.executable, forked_cli.LOCAL_RUNNER, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=run_env,
                timeout=900,
            ).returncode
    else:
        rc = forked_cli.run(args, str(output_path), run_env)
    output = output_path.read_text(encoding="utf-8", errors="replace")
    assert rc == expect_rc, output
    if not summary_path.exists():
        return None, output
    with open(summary_path) as f:
        return json.load(f), output


def graft_cli(*args, env: dict | None = None, timeout: int = 120):
    """local_runner.py with `args` in a fresh folder, for the checks that end before TFX; returns
    (CompletedProcess, seconds). The folder makes the default pipeline root (and the run lock in
    it) this call's alone, so tests side by side never wait for each other's lock."""
    import subprocess
    import sys
    import tempfile
    import time

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="graft-cli-") as folder:
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "local_runner.py"), *args],
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    return result, time.time() - started


def serving_version_of_classes(serving_dir, class_names: list) -> None:
    """A stand-in serving version 1 that says which classes it predicts: what the pre-flight
    checks read (no model inside)."""
    import json

    extra = serving_dir / "1" / "assets.extra"
    extra.mkdir(parents=True)
    (extra.parent / "saved_model.pb").write_bytes(b"placeholder")
    (extra / "class_names.json").write_text(json.dumps(class_names))


def small_training_config(tmp_path, **overrides) -> dict:
    """A slim MobileNetV2 trained from scratch at 32 px: the fastest config that learns digits."""
    config = {
        "pipeline_name": "test",
        "pipeline_root": str(tmp_path / "root"),
        "metadata_path": str(tmp_path / "mlmd" / "metadata.db"),
        "serving_dir": str(tmp_path / "serving"),
        "backbone": "mobilenet_v2",
        "backbone_kwargs": {"alpha": 0.35},
        "weights": "none",
        "image_size": 32,
        "stages": [{"name": "full", "epochs": 6, "trainable": "all", "learning_rate": 0.002}],
        "train_batchnorm": True,
        "batchnorm_momentum": 0.9,
        "min_accuracy": 0.6,
        "validation_percent": 10,  # curves per epoch, though the data is small
        "allow_frozen_random_backbone": True,  # behaviour tests may freeze a random backbone for speed
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def tiny_digits_dir(tmp_path_factory):
    """40 images of each of 3 digit classes: enough to run the DAG, fast."""
    root = tmp_path_factory.mktemp("tiny_digits")
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {}
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        if label not in (0, 1, 7) or counts.get(label, 0) >= 40:
            continue
        counts[label] = counts.get(label, 0) + 1
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.round(image * (255.0 / 16.0)).astype(np.uint8), mode="L").save(folder / f"{index:04d}.png")
    return str(root)


def transform_graph_dir(pipeline_root) -> str:
    """The one Transform graph a local run wrote under `pipeline_root`."""
    import glob

    [graph_dir] = glob.glob(os.path.join(str(pipeline_root), "Transform", "transform_graph", "*"))
    return graph_dir


def assert_transform_matches_keras(graph_dir: str, backbone_name: str, files: list, size: int) -> None:
    """The Transform graph in `graph_dir` equals Keras' own preprocess_input for `backbone_name`."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras as keras

    from components.backbones import registry

    entry = registry.get(backbone_name)
    images = [open(f, "rb").read() for f in files]
    transformed = (
        tft.TFTransformOutput(graph_dir)
        .transform_features_layer()({"image": tf.constant([[b] for b in images])})["image"]
        .numpy()
    )
    preprocess_input = (
        getattr(keras.applications, entry.family).preprocess_input if entry.family else lambda x: x / 255.0
    )
    for i, data in enumerate(images):
        resized = tf.image.resize(tf.cast(tf.io.decode_png(data, channels=3), tf.float32), [size, size]).numpy()
        np.testing.assert_allclose(transformed[i], preprocess_input(resized), atol=1e-4)


def assert_signatures_agree(model_dir: str, files: list, num_classes: int) -> None:
    """Both serving signatures of a pushed model give the same probabilities."""
    import tensorflow as tf

    images = [open(f, "rb").read() for f in files]
    served = tf.saved_model.load(model_dir)
    by_bytes = served.signatures["serving_image_bytes"](image_bytes=tf.constant(images))["probabilities"].numpy()
    examples = [
        tf.train.Example(
            features=tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))})
        ).SerializeToString()
        for b in images
    ]
    by_example = served.signatures["serving_default"](examples=tf.constant(examples))["probabilities"].numpy()
    np.testing.assert_allclose(by_bytes, by_example, atol=1e-6)
    assert by_bytes.shape == (len(images), num_classes)


# The slim MobileNets the tests train: v1 at alpha 0.25 builds, traces and trains in about two
# thirds of v2's time at 0.35 (the pipeline's default family, which the pipeline tests run).
# Untrained at 32 px, v1 gives every image the same top features (variances 0): a test that
# needs features to differ between images, or names v2's layers, asks for mobilenet_v2.
SLIM_KWARGS = {"mobilenet": {"alpha": 0.25}, "mobilenet_v2": {"alpha": 0.35}}


def tiny_trainer_settings(**overrides):
    """The Trainer's settings as the pipeline makes them (GraftConfig's defaults, through the
    real slice), for a slim MobileNet (v1) at 32 px unless overridden. BatchNorm stays in
    inference mode, as with pretrained weights (from scratch it would train)."""
    from pipeline.config import GraftConfig, trainer_settings

    values = {
        "data_dir": ".",
        "weights": "none",
        "backbone": "mobilenet",
        "image_size": 32,
        "dropout": 0.0,
        "train_batchnorm": False,
        **overrides,
    }
    values.setdefault("backbone_kwargs", SLIM_KWARGS.get(values["backbone"], {}))
    return trainer_settings(GraftConfig(**values))


def export_tiny_hub_feature_vector(path: str, features: int = 16) -> str:
    """A TF2 SavedModel with the TF Hub feature-vector interface ([b, h, w, 3] in [0, 1] ->
    [b, features]) and trainable variables, exported here because hub URLs are unreachable."""
    import tensorflow as tf

    class FeatureVector(tf.__internal__.tracking.AutoTrackable):
        def __init__(self):
            self.kernel = tf.Variable(tf.random.stateless_normal([27, features], seed=[1, 2]) * 0.3)
            self.variables = [self.kernel]
            self.trainable_variables = [self.kernel]

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            patches = tf.image.extract_patches(images, [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "VALID")
            return tf.reduce_mean(tf.nn.relu(tf.tensordot(patches, self.kernel, 1)), axis=[1, 2])

    tf.saved_model.save(FeatureVector(), path)
    return path


def export_tiny_image_model(model_dir: str, class_names: list, max_image_pixels: int = 64 * 64) -> str:
    """A Graft image model as the Trainer exports it (its real signatures, serving limits and
    class names; untrained, 32 px), without a pipeline: a Transform stand-in computes what
    preprocessing_fn does for an image (the pixel limit included)."""
    import json

    import tensorflow as tf

    from components.backbones.preprocessing import preprocess_image_bytes
    from components.contract import EXTRA_DIR, SERVING_LIMITS_FILE
    from components.trainer.export import make_signatures, serving_limits
    from components.trainer.model import build_model

    class TransformStandIn:
        def __call__(self, raw):
            return {"image": preprocess_image_bytes(raw["image"], "mobilenet_v2", 32, max_image_pixels)}

        def transform_features_layer(self):
            return self

    settings = tiny_trainer_settings(max_image_pixels=max_image_pixels)
    tf.keras.utils.set_random_seed(0)
    model = build_model(settings, len(class_names))
    feature = tf.io.FixedLenFeature([], tf.string)
    signatures = make_signatures(model, TransformStandIn(), feature, list(class_names), settings)
    model.save(model_dir, save_format="tf", signatures=signatures, save_traces=False)
    os.makedirs(os.path.join(model_dir, EXTRA_DIR))
    with open(os.path.join(model_dir, EXTRA_DIR, SERVING_LIMITS_FILE), "w") as f:
        json.dump(serving_limits(settings), f)
    with open(os.path.join(model_dir, EXTRA_DIR, "class_names.json"), "w") as f:
        json.dump(list(class_names), f)
    return model_dir


S3_BUCKET = "graft-test"


@pytest.fixture(scope="session")
def s3():
    """A local S3 server and a bucket, S3_BUCKET (tests/s3_server.py); yields the environment a
    process needs to reach it and a boto3 client. Whatever touches S3 through TensorFlow runs in
    a subprocess: tensorflow-io's S3 filesystem aborts its process at exit."""
    from tests.s3_server import local_s3

    with local_s3(S3_BUCKET) as (env, client):
        yield env, client
