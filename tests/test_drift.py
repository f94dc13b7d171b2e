"""The drift checks' parts without a pipeline: the out-of-vocabulary check, the MMD test, TFDV's
comparators on the properties, the `drift:` section's validation, and when the gate compares."""

import numpy as np
import pytest

from components.contract import ConfigError
from components.drift import statistics
from components.drift.embedding import mmd_test
from components.drift.sample import Sample
from components.drift.settings import DriftSection
from components.retrain_gate.decision import new_data

WORDS = "the film was a quiet and moving story of love loss and hope told with care".split()
OTHER = "der Zug nach Berlin fährt heute wegen Bauarbeiten später ab als geplant".split()


def texts(words, count, rng):
    return [" ".join(rng.choice(words, size=12)) for _ in range(count)]


def text_sample(texts_, labels=None) -> Sample:
    labels = labels or [b"a"] * len(texts_)
    values = {name: [None] * len(texts_) for name in ("image_height", "image_width", "image_channels")}
    values.update(
        {
            "label_name": labels,
            "image_format": [None] * len(texts_),
            "image_brightness": [None] * len(texts_),
            "text_length": [len(t.split()) for t in texts_],
        }
    )
    return Sample(
        values=values, texts=texts_, contents=[str(i) for i in range(len(texts_))], records=[b""] * len(texts_)
    )


def test_out_of_vocabulary_rate_fires_on_another_language_not_on_more_of_the_same():
    rng = np.random.default_rng(0)
    trained, held_out = text_sample(texts(WORDS, 200, rng)), text_sample(texts(WORDS, 50, rng))
    same = statistics.oov_check(trained, held_out, text_sample(texts(WORDS, 200, rng)), DriftSection())
    assert not same["drifted"] and abs(same["value"]) < 0.01
    mixed = texts(WORDS, 100, rng) + texts(OTHER, 100, rng)  # half the texts in another language
    other = statistics.oov_check(trained, held_out, text_sample(mixed), DriftSection())
    assert other["drifted"] and 0.4 < other["value"] < 0.6 and other["threshold"] == 0.05


def test_text_length_and_labels_go_through_tfdvs_comparators():
    rng = np.random.default_rng(1)
    old = text_sample(texts(WORDS, 300, rng), [b"a", b"b", b"c"] * 100)
    short = [" ".join(t.split()[:3]) for t in texts(WORDS, 300, rng)]
    checks = {c["feature"]: c for c in statistics.feature_checks(old, text_sample(short, [b"a"] * 300), DriftSection())}
    assert set(checks) == {"label_name", "text_length"}  # the image properties are absent on both sides
    assert checks["label_name"]["statistic"] == "L-infinity" and checks["label_name"]["value"] == pytest.approx(
        2 / 3, abs=1e-3
    )
    assert checks["text_length"]["statistic"] == "Jensen-Shannon divergence" and checks["text_length"]["drifted"]
    same = statistics.feature_checks(old, text_sample(texts(WORDS, 300, rng), [b"a", b"b", b"c"] * 100), DriftSection())
    assert not any(c["drifted"] for c in same)


def test_the_mmd_test_holds_its_level_and_sees_a_shift():
    rng = np.random.default_rng(2)
    p_values = [
        mmd_test(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), permutations=200, seed=s)[1] for s in range(20)
    ]
    assert sum(p < 0.05 for p in p_values) <= 3  # about 1 in 20 expected
    _, shifted = mmd_test(rng.normal(size=(60, 8)), rng.normal(0.5, 1.0, size=(60, 8)), permutations=200)
    assert shifted < 0.01
    # Seeded: the same data, the same p-value.
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    assert mmd_test(x, y)[1] == mmd_test(x, y)[1]


def test_the_drift_section_names_what_is_wrong():
    with pytest.raises(ConfigError) as error:
        DriftSection.from_section({"on_drift": "stop", "label_linf": 2, "embedding_examples": 5})
    text = str(error.value)
    assert "drift.on_drift must be one of block, warn, off (got 'stop')" in text
    assert "drift.label_linf must be a number in (0, 1]" in text and "drift.embedding_examples" in text
    with pytest.raises(ConfigError, match="did you mean 'on_drift'"):
        DriftSection.from_section({"on_drfit": "warn"})


def test_the_gate_compares_only_when_the_data_is_new():
    key = {"span": 2, "input_fingerprint": "f2", "data_listing": "l"}
    assert new_data(key, {"training_key": {"span": 1, "input_fingerprint": "f1", "data_listing": "l"}})
    assert not new_data(key, {"training_key": dict(key)})  # a config change alone: the same data


def image_sample(channels: list, heights: list, brightness: list) -> Sample:
    n = len(channels)
    values = {
        "label_name": [b"a"] * n,
        "image_format": [b"PNG"] * n,
        "image_height": heights,
        "image_width": heights,
        "image_channels": channels,
        "image_brightness": brightness,
        "text_length": [None] * n,
    }
    return Sample(values=values, texts=[None] * n, contents=[str(i) for i in range(n)], records=[])


def test_one_odd_image_or_text_is_not_a_new_distribution():
    """Review finding: TFDV's Jensen-Shannon on equal-width histograms read one RGBA image among
    400 RGB ones, or one 225-pixel image among 224s, as divergence 1.0, and one 400-word text
    among 1,000 short ones as 0.11: sizes and channels are compared as categories, brightness and
    length clipped to the pooled 1-99 % range."""
    rng = np.random.default_rng(3)
    old = image_sample([3] * 400, [224] * 400, list(rng.normal(100, 20, 400)))
    new = image_sample([3] * 399 + [4], [224] * 399 + [225], list(rng.normal(100, 20, 399)) + [255.0])
    checks = statistics.feature_checks(old, new, DriftSection())
    assert not [c["feature"] for c in checks if c["drifted"]], checks
    assert {c["feature"]: c["statistic"] for c in checks}["image_channels"] == "L-infinity"
    # A change of the whole: every image at a quarter of the size, every one brighter.
    moved = image_sample([3] * 400, [112] * 400, list(rng.normal(180, 20, 400)))
    fired = {c["feature"] for c in statistics.feature_checks(old, moved, DriftSection()) if c["drifted"]}
    assert fired == {"image_height", "image_width", "image_brightness"}
    short = texts(WORDS, 1000, rng)
    checks = statistics.feature_checks(
        text_sample(short), text_sample(short[:999] + [" ".join(["word"] * 400)]), DriftSection()
    )
    assert not [c for c in checks if c["drifted"]], checks


def test_a_text_models_ops_are_registered_where_the_gate_loads_it(tmp_path):
    """Review finding: on Kubeflow the RetrainGate runs alone in its process, and loading a text
    model (its graph holds tensorflow-text's NormalizeUTF8) failed with 'Op type not registered'."""
    import subprocess
    import sys

    import tensorflow as tf
    import tensorflow_text as text

    class Normalizer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            return text.normalize_utf8(texts, "NFC")

    tf.saved_model.save(Normalizer(), str(tmp_path / "model"))
    script = (
        "import sys; from components.drift.embedding import load_model; "
        "print(load_model(sys.argv[1])(['Cafe\\u0301']).numpy()[0].decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "Caf\u00e9"


def test_on_drift_from_the_command_line_reaches_the_gate(tmp_path):
    from PIL import Image

    from pipeline import config as cfg
    from pipeline.cli import _run_parser, config_from_args

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name / "0.png")
    args = _run_parser().parse_args(["--data-dir", str(tmp_path), "--on-drift", "warn", "--weights", "none"])
    config = config_from_args(args)
    assert config.drift == {"on_drift": "warn"}
    assert cfg.retrain_gate_settings(config).drift == DriftSection(on_drift="warn")
    assert "drift" not in cfg.retrain_gate_settings(config).model_config  # thresholds never retrain


def _write_examples(uri, splits: dict) -> str:
    """An examples artifact on disk as ExampleGen writes text: Split-<name>/data.gz."""
    import os

    import tensorflow as tf

    for split, texts_ in splits.items():
        os.makedirs(os.path.join(uri, f"Split-{split}"))
        with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{split}", "data.gz"), options="GZIP") as writer:
            for text in texts_:
                feature = {
                    "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                    "label_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"])),
                    "text_length": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(text.split())])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(uri)


def test_a_model_trained_on_a_span_window_is_compared_with_every_span_it_was_trained_on(tmp_path):
    """The provenance of a span_window model lists each span's examples: all of them are the
    reference, and every example of each counts as trained on (not as new) in the next span."""
    from components.drift.compare import compare

    rng = np.random.default_rng(3)
    one, two, fresh = texts(WORDS, 40, rng), texts(WORDS, 30, rng), texts(WORDS, 20, rng)
    span_1 = _write_examples(tmp_path / "1", {"train": one[:30], "eval": one[30:]})
    span_2 = _write_examples(tmp_path / "2", {"train": two[:20], "eval": two[20:]})
    new = _write_examples(tmp_path / "3", {"train": one[:30] + two[:20] + fresh, "eval": []})
    window = [{"span": 1, "examples_uri": span_1}, {"span": 2, "examples_uri": span_2}]
    record = {"data": {"span": 2, "examples_uri": span_2, "window": window}}
    report = compare(DriftSection(min_examples=10_000), new, str(tmp_path / "7"), record)
    assert report["reference"]["window"] == window
    # 70 examples in the window (50 trained, 20 held out); only the 20 fresh ones are new.
    assert "too few examples (70 then, 20 new now" in report["not_run"][0]["reason"], report
    # The serving model's data without the window: span 2's alone, span 1's texts then read as new.
    alone = compare(
        DriftSection(min_examples=10_000), new, str(tmp_path / "7"), {"data": record["data"] | {"window": None}}
    )
    assert "too few examples (30 then, 50 new now" in alone["not_run"][0]["reason"], alone
