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
