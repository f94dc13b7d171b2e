"""The statistics checks: label shares, image properties and text length through TFDV's own drift
comparators (L-infinity for categories, Jensen-Shannon divergence for numbers), on statistics TFDV
computes in memory from the two samples; and the text's out-of-vocabulary rate, which TFDV has no
comparator for."""

from __future__ import annotations

import re

from components.contract import LABEL_NAME_KEY
from components.drift.sample import CATEGORICAL_PROPERTIES, NUMERIC_PROPERTIES, Sample
from components.drift.settings import DriftSection

_STATISTIC = {"L_INFTY": "L-infinity", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon divergence"}


def _clipped(values: list, bounds: tuple) -> list:
    low, high = bounds
    return [
        None if v is None else type(v)(min(max(v, low), high)) if isinstance(v, int) else float(min(max(v, low), high))
        for v in values
    ]


def _bounds(old: Sample, new: Sample, name: str) -> tuple:
    """The 1st and 99th percentiles of both samples' values together. TFDV's Jensen-Shannon
    divergence compares equal-width histograms, where one outlier that widens a side's range moves
    every bucket (one 400-word text among 1,000 short ones: 0.11 against 0.017); clipped to the
    pooled range, an outlier no longer does, and a side that moved as a whole still lies apart."""
    import numpy as np

    known = [v for v in old.values[name] + new.values[name] if v is not None]
    return tuple(np.percentile(known, [1, 99])) if known else (-np.inf, np.inf)


def _record_batch(sample: Sample, names: list[str], bounds: dict):
    import pyarrow as pa

    arrays = []
    for name in names:
        values = sample.values[name]
        if name in CATEGORICAL_PROPERTIES:  # sizes and channels too: as categories, by their shares
            values = [None if v is None else v if isinstance(v, bytes) else str(v).encode() for v in values]
        elif name in NUMERIC_PROPERTIES:
            values = _clipped(values, bounds[name])
        first = next((v for v in values if v is not None), b"")
        arrow_type = pa.binary() if isinstance(first, bytes) else pa.int64() if isinstance(first, int) else pa.float32()
        arrays.append(pa.array([None if v is None else [v] for v in values], type=pa.list_(arrow_type)))
    return pa.RecordBatch.from_arrays(arrays, names)


def _statistics(sample: Sample, names: list[str], bounds: dict):
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl

    return stats_impl.generate_statistics_in_memory(_record_batch(sample, names, bounds), tfdv.StatsOptions())


def _present(sample: Sample, name: str) -> bool:
    return any(v is not None for v in sample.values[name])


def _check(name: str) -> str:
    return "label" if name == LABEL_NAME_KEY else "text" if name.startswith("text") else "image"


def feature_checks(old: Sample, new: Sample, settings: DriftSection) -> list[dict]:
    """One check per feature both samples have: feature, statistic, value, threshold, drifted."""
    import tensorflow_data_validation as tfdv

    names = [n for n in (LABEL_NAME_KEY, *CATEGORICAL_PROPERTIES, *NUMERIC_PROPERTIES) if _present(old, n)]
    names = [n for n in names if _present(new, n)]
    if not names:
        return []
    bounds = {name: _bounds(old, new, name) for name in names if name in NUMERIC_PROPERTIES}
    old_statistics, new_statistics = _statistics(old, names, bounds), _statistics(new, names, bounds)
    schema = tfdv.infer_schema(old_statistics)
    for name in names:
        comparator = tfdv.get_feature(schema, name).drift_comparator
        if name == LABEL_NAME_KEY:
            comparator.infinity_norm.threshold = settings.label_linf
        elif name in CATEGORICAL_PROPERTIES:
            comparator.infinity_norm.threshold = settings.property_linf
        else:
            comparator.jensen_shannon_divergence.threshold = settings.numeric_js
    anomalies = tfdv.validate_statistics(new_statistics, schema, previous_statistics=old_statistics)
    checks = []
    for info in anomalies.drift_skew_info:
        name = info.path.step[0]
        for measurement in info.drift_measurements:
            statistic = measurement.Type.Name(measurement.type)
            checks.append(
                {
                    "check": _check(name),
                    "feature": name,
                    "statistic": _STATISTIC.get(statistic, statistic),
                    "value": round(float(measurement.value), 4),
                    "threshold": float(measurement.threshold),
                    "drifted": bool(measurement.value > measurement.threshold),
                }
            )
    order = {name: i for i, name in enumerate(names)}
    return sorted(checks, key=lambda c: order[c["feature"]])


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def oov_rate(texts: list[str], vocabulary: set) -> float:
    words = [w for t in texts for w in _words(t)]
    return sum(w not in vocabulary for w in words) / max(1, len(words))


def oov_check(trained_on: Sample, held_out: Sample, new: Sample, settings: DriftSection) -> dict:
    """The new texts' out-of-vocabulary word rate against the vocabulary the serving model was
    trained on, less the same rate on its own held-out (eval) texts: what unseen words cost normally."""
    vocabulary = {w for t in trained_on.texts if t for w in _words(t)}
    baseline = oov_rate([t for t in held_out.texts if t], vocabulary)
    rate = oov_rate([t for t in new.texts if t], vocabulary)
    value = rate - baseline
    return {
        "check": "text",
        "feature": "out_of_vocabulary_rate",
        "statistic": f"increase over the held-out rate ({baseline:.4f}; new {rate:.4f})",
        "value": round(value, 4),
        "threshold": settings.oov_increase,
        "drifted": bool(value > settings.oov_increase),
    }
