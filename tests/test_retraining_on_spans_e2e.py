"""Retraining on a stream of spans, through the pipeline: the drift gate and the warm start.

The digits as spans: a model trained on span 1 (half of scikit-learn's digits) serves. Drift:
fresh samples of the other half must not fire a check (20 resamplings, at most one false alarm),
a class's share moved from 10 % to 40 % fires the label check, inverted images and images at a
quarter of the pixels fire image-property and embedding checks; a drifted span through the real
pipeline is blocked before training and nothing is pushed. Warm start (`init_from: serving`): a
retrain starts from the weights of the model now serving (the first run, with nothing serving,
starts cold), and a model cannot continue on other classes or on a vocabulary computed anew."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image
from sklearn.datasets import load_digits

from components.contract import EXAMPLES_SIGNATURE, IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, PATH_KEY
from components.drift.compare import compare
from components.drift.settings import DriftSection
from components.example_gen import image_ingest
from components.example_gen.image_executor import property_features
from components.files import tfrecords
from components.serving import provenance, serving_dir
from pipeline.config import GraftConfig
from pipeline.local_dag import training_window
from tests.conftest import graft_cli, run_graft, serving_version_of_classes, small_training_config, write_digit_pngs
from tests.spans import examples_artifacts

CLASSES = list(range(10))
SPAN_SIZE = 300  # 30 of each class in a fresh sample


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def digit_pixels(index: int, digits) -> np.ndarray:
    return np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8)


def halves():
    """scikit-learn's digits split in two by index: the first half trains the serving model, new
    spans are drawn from the second."""
    digits = load_digits()
    first = [i for i in range(len(digits.target)) if i % 2 == 0]
    second = [i for i in range(len(digits.target)) if i % 2 == 1]
    return digits, first, second


def draw(indices, digits, rng, shares=None, count=SPAN_SIZE) -> list:
    """`count` of `indices` with the classes in `shares` (default: equal), without replacement."""
    shares = shares or {c: 1 / len(CLASSES) for c in CLASSES}
    picked = []
    for digit, share in shares.items():
        pool = [i for i in indices if digits.target[i] == digit]
        picked += list(rng.choice(pool, size=round(share * count), replace=False))
    return picked


def write_examples(uri, images) -> str:
    """An examples artifact as ExampleGen writes it (Split-train/eval, GZIP TFRecords), each
    example with the properties ExampleGen records (the same functions)."""
    writers = {split: tf.io.TFRecordWriter(_split_file(uri, split), options="GZIP") for split in ("train", "eval")}
    for n, (name, label, data) in enumerate(images):
        reason, properties = image_ingest.inspect(data, 10_000_000)
        assert reason is None
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"digit_{label}".encode()])),
                    PATH_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
                    **property_features(properties),
                }
            )
        )
        writers["eval" if n % 5 == 0 else "train"].write(example.SerializeToString())
    for writer in writers.values():
        writer.close()
    return str(uri)


def _split_file(uri, split) -> str:
    os.makedirs(os.path.join(uri, f"Split-{split}"), exist_ok=True)
    return os.path.join(uri, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")


def span_images(picked, digits, change=lambda pixels: pixels) -> list:
    return [
        (f"digit_{digits.target[i]}/{i:04d}.png", int(digits.target[i]), png(change(digit_pixels(i, digits))))
        for i in picked
    ]


def write_span_folder(root, images) -> None:
    for name, _, data in images:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def invert(pixels):
    return 255 - pixels


def quarter(pixels):
    """A quarter of the pixels: 8x8 -> 4x4."""
    return np.asarray(Image.fromarray(pixels).resize((4, 4), Image.BILINEAR))


def fired(report) -> list:
    return sorted(c["feature"] for c in report["checks"] if c["drifted"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model trained through the pipeline on span 1 (300 digits of the first half), serving;
    `init_from: serving` and no dropout, for the warm-start test."""
    tmp_path = tmp_path_factory.mktemp("spans")
    digits, first, _ = halves()
    span = span_images(draw(first, digits, np.random.default_rng(0)), digits)
    write_span_folder(str(tmp_path / "digits" / "span-1"), span)
    config = small_training_config(
        tmp_path,
        data_dir=str(tmp_path / "digits"),
        spans=True,
        min_accuracy=0.0,
        eval_percent=30,
        init_from="serving",
        dropout=0.0,
        # 10 classes from scratch on ~200 training images: 6 epochs of 32 (40 steps) left the
        # loss at chance's; 15 of 16 (195 steps) halve it (eval accuracy ~0.27, chance 0.1): a
        # model that learned something, which is all the warm start's loss comparison needs.
        batch_size=16,
        stages=[{"name": "full", "epochs": 15, "trainable": "all", "learning_rate": 0.003}],
    )
    summary, output = run_graft(tmp_path, config, "span1")
    assert summary["pushed"], output
    assert summary["drift"] is None  # nothing served: nothing to compare with
    version = serving_dir.newest(config["serving_dir"])
    return tmp_path, config, version, provenance.read(version), summary, output


@pytest.mark.e2e
def test_fresh_samples_do_not_fire_and_each_kind_of_drift_fires_its_check(served, tmp_path):
    _, _, version, record, _, _ = served
    digits, _, second = halves()
    rng = np.random.default_rng(1)
    settings = DriftSection()
    model = tf.saved_model.load(version)  # once: compare() would load it for each report
    false_alarms = []
    for n in range(20):
        report = compare(
            settings,
            write_examples(tmp_path / f"fresh{n}", span_images(draw(second, digits, rng), digits)),
            version,
            record,
            model,
        )
        assert {c["check"] for c in report["checks"]} == {"label", "image", "embedding"}, report
        false_alarms += [fired(report)] if fired(report) else []
    print(f"\n20 fresh samples: false alarms {false_alarms}")
    assert len(false_alarms) <= 1

    def case(name, picked, change=lambda p: p):
        report = compare(
            settings, write_examples(tmp_path / name, span_images(picked, digits, change)), version, record, model
        )
        print(f"{name}: " + "; ".join(f"{c['feature']} {c['value']:g} ({c['threshold']:g})" for c in report["checks"]))
        return report

    shares = {c: (0.4 if c == 3 else 0.6 / 9) for c in CLASSES}
    shifted = case("one_class_at_40_percent", draw(second, digits, rng, shares, count=200))
    assert "label_name" in fired(shifted) and shifted["blocked"]
    [label] = [c for c in shifted["checks"] if c["feature"] == "label_name"]
    assert label["statistic"] == "L-infinity" and 0.25 < label["value"] < 0.35 and label["threshold"] == 0.1
    inverted = case("inverted", draw(second, digits, rng), invert)
    assert {"image_brightness", "serving model features"} <= set(fired(inverted))
    small = case("quarter_resolution", draw(second, digits, rng), quarter)
    assert {"image_height", "image_width"} <= set(fired(small))
    # warn: the same checks fire, the run is not blocked.
    warned = compare(DriftSection(on_drift="warn"), str(tmp_path / "inverted"), version, record, model)
    assert fired(warned) == fired(inverted) and not warned["blocked"]


def _served_loss(version: str, examples_uri: str) -> float:
    """The served model's mean cross-entropy on the training split it was trained on (the
    ExampleGen's records, through the served tf.Example signature)."""
    model = tf.saved_model.load(version)
    paths = sorted(
        os.path.join(examples_uri, "Split-train", name)
        for name in os.listdir(os.path.join(examples_uri, "Split-train"))
    )
    records = [r.numpy() for r in tfrecords(paths)]
    labels = np.array([tf.train.Example.FromString(r).features.feature[LABEL_KEY].int64_list.value[0] for r in records])
    probabilities = model.signatures[EXAMPLES_SIGNATURE](examples=tf.constant(records))["probabilities"].numpy()
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


@pytest.mark.e2e
def test_a_warm_start_begins_at_the_served_models_loss(served):
    tmp_path, config, version, record, first, output = served
    assert "nothing serves yet" in output  # a first run starts cold
    cold_first_epoch = first["training_history"][0]["loss"]

    # The same images, one epoch at a rate too small to move a weight, BatchNorm in inference mode
    # and no dropout: the training loss it reports is the loss of the weights it started from.
    still = {
        **config,
        "stages": [{"name": "full", "epochs": 1, "trainable": "all", "learning_rate": 1e-9}],
        "train_batchnorm": False,
    }
    second, output = run_graft(tmp_path, still, "warm")
    assert f"starting from the weights of serving version {os.path.basename(version)}" in output
    assert second["training_choices"]["init_from"] == f"serving version {os.path.basename(version)}"
    assert second["drift"] is None  # the same data under another config: nothing to compare
    warm_first_epoch = second["training_history"][0]["loss"]
    served_loss = _served_loss(version, record["data"]["examples_uri"])
    print(
        f"\nfirst-epoch loss: cold {cold_first_epoch:.3f}, warm {warm_first_epoch:.3f}; served model {served_loss:.3f}"
    )
    assert served_loss < 0.5 * cold_first_epoch  # the served model learned something
    # The training part is the training split less its 10 % validation part: close, not equal.
    assert abs(warm_first_epoch - served_loss) <= 0.02 + 0.15 * served_loss, (warm_first_epoch, served_loss)
    # Its accuracy is the served model's: the candidate is the served model, unchanged.
    assert second["metrics"]["sparse_categorical_accuracy"] == pytest.approx(
        first["metrics"]["sparse_categorical_accuracy"], abs=0.02
    )


@pytest.mark.e2e
def test_a_drifted_span_is_blocked_before_training_and_nothing_is_pushed(served):
    tmp_path, config, _, _, _, _ = served
    version = serving_dir.newest(config["serving_dir"])
    digits, _, second = halves()
    span = span_images(draw(second, digits, np.random.default_rng(2)), digits, invert)
    write_span_folder(str(tmp_path / "digits" / "span-2"), span)
    summary, output = run_graft(tmp_path, config, "span2")
    # TFX's driver took the newest span alone: its examples record span 2, all of its images, no others.
    assert examples_artifacts(config["metadata_path"])[-1].custom_properties["span"].int_value == 2
    assert summary["ingest"]["total"] == len(span)
    drift = summary["drift"]
    assert drift["blocked"] and drift["reference"]["version"] == os.path.basename(version)
    assert "image_brightness" in fired(drift) and "FIRED image: image_brightness" in output
    for check in drift["checks"]:
        assert set(check) == {"check", "feature", "statistic", "value", "threshold", "drifted"}
    assert summary["run_skipped_reason"].startswith("drift: the new data is not like what serving version")
    assert "Trainer" not in summary["component_state"] and not summary.get("pushed")
    assert serving_dir.newest(config["serving_dir"]) == version  # nothing pushed
    # With span_window, a later run trains on its own span and the newest spans trained before
    # it: span 2 (these inverted images, blocked) was never trained, so span 3's window of 2 is
    # spans 1 and 3, and of 3 still (the drift gate, an invalid span, a killed run: none trains).
    (tmp_path / "digits" / "span-3").mkdir()
    assert training_window(GraftConfig(**{**config, "span_window": 2})) == [1, 3]
    assert training_window(GraftConfig(**{**config, "span_window": 3})) == [1, 3]
    assert training_window(GraftConfig(**{**config, "span_window": 1})) == [3]


def test_a_warm_start_on_other_classes_is_refused_before_tfx(tmp_path):
    write_digit_pngs(str(tmp_path / "data"), {"a": 0, "b": 1}, 6)
    serving_version_of_classes(tmp_path / "serving", ["a", "b", "c"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"allow_class_change": True, "init_from": "serving"}))
    args = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--weights", "none"]
    result, _ = graft_cli(*args, "--serving-dir", str(tmp_path / "serving"))
    assert result.returncode == 2, result.stderr
    assert "removed ['c']" in result.stderr and "init_from: serving continues that model" in result.stderr

    # A vocabulary computed from each run's data cannot continue: refused by the config check.
    texts = tmp_path / "texts"
    for label in ("pos", "neg"):
        (texts / label).mkdir(parents=True)
        for i in range(6):
            (texts / label / f"{i}.txt").write_text(f"{label} text number {i}")
    result, _ = graft_cli("--text-data", str(texts), "--backbone", "text_scratch", "--init-from", "serving")
    assert result.returncode == 2, result.stderr
    assert "text_scratch computes its vocabulary anew" in result.stderr
