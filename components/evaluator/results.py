"""What TFMA wrote for one evaluation, read back: metrics overall and per class, the arg-max
confusion matrix, and why the validation failed. The end-of-run summary, the Kubeflow run's
summary and the Pusher's provenance all read an evaluation through this one module."""

from __future__ import annotations

import math
import os

import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.evaluator import promotion


def _metric_name(key) -> str:
    name = key.name
    if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
        name += f"/class_{key.sub_key.class_id.value}"
    if key.HasField("aggregation_type") and key.aggregation_type.macro_average:
        name = "macro_" + name
    if key.model_name == "baseline" and not key.is_diff:
        name = "baseline_" + name
    if key.is_diff:
        name += "_change"
    return name


def _describe_failure(failure, class_name: str | None = None) -> str:
    """'accuracy 0.41 < lower bound 0.8' / 'accuracy change vs serving -0.03 < allowed -0.0';
    on a class's slice, the class is named and the accuracy called what it is there, its recall."""
    name = (
        failure.metric_key.name
        if class_name is None
        else f"class {class_name!r}: recall ({failure.metric_key.name} on its eval examples)"
    )
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if failure.metric_key.is_diff:
        change = threshold.change_threshold
        bound = change.absolute.value if change.HasField("absolute") else change.relative.value
        kind = "absolute" if change.HasField("absolute") else "relative"
        option = "" if class_name is None else " (max_class_recall_drop)"
        return (
            f"{name} changed by {value:+.4f} against the model now serving; the allowed {kind} change is "
            f">= {bound:+.4f}{option}"
        )
    bound = threshold.value_threshold.lower_bound.value
    option = "min_accuracy" if class_name is None else "min_class_recall"
    return f"{name} {value:.4f} is below the required {bound:.4f} ({option})"


def _slice_class(slice_key) -> str | None:
    """The class a per-class slice holds (label_name=<class>), None for the overall slice."""
    for key in slice_key.single_slice_keys:
        return key.bytes_value.decode("utf-8") if key.HasField("bytes_value") else str(key)
    return None


def argmax_class_metrics(entries: list, num_classes: int) -> dict:
    """Per-class precision, recall and F1, and macro F1, of the arg-max prediction, read off the
    confusion matrix TFMA computed ([actual, predicted, count] entries at threshold 0). TFMA's
    binarized Precision/Recall threshold each class's probability at 0.5 instead, which
    disagrees with the matrix whenever the winning probability is below 0.5."""
    counts = [[0.0] * num_classes for _ in range(num_classes)]
    for actual, predicted, count in entries:
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            counts[actual][predicted] += count
    metrics, f1s = {}, []
    for c in range(num_classes):
        hits = counts[c][c]
        predicted = sum(counts[a][c] for a in range(num_classes))
        actual = sum(counts[c])
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.update(
            {
                f"precision/class_{c}": round(precision, 6),
                f"recall/class_{c}": round(recall, 6),
                f"f1_score/class_{c}": round(f1, 6),
            }
        )
        f1s.append(f1)
    metrics["macro_f1_score"] = round(sum(f1s) / num_classes, 6) if num_classes else 0.0
    return metrics


def slice_values(metric_keys_and_values, one_class: bool) -> dict:
    """{metric name: value} of one slice; None where the metric is not applicable: a NaN
    (TFMA's answer for an undefined metric), or an AUC in a slice holding one class (each
    per-class slice), where TFMA reports 0.0."""
    values = {}
    for item in metric_keys_and_values:
        if not item.value.HasField("double_value"):
            continue
        name, value = _metric_name(item.key), item.value.double_value.value
        applicable = math.isfinite(value) and not (one_class and item.key.name.lower().startswith("auc"))
        values[name] = round(value, 6) if applicable else None
    return values


# Metrics that are fractions of examples: a value, and so a bound, outside [0, 1] cannot be.
FRACTION_METRICS = ("sparse_categorical_accuracy", "top_k_accuracy", "auc", "precision", "recall", "f1_score")


def _possible_range(key) -> tuple[float, float]:
    """What `key`'s metric can be: [0, 1] for a fraction, [-1, 1] for its change against the
    baseline, unbounded otherwise (a count, a loss)."""
    if key.name not in FRACTION_METRICS:
        return -math.inf, math.inf
    return (-1.0, 1.0) if key.is_diff else (0.0, 1.0)


def slice_intervals(metric_keys_and_values) -> dict:
    """{metric name: {"value", "lower", "upper"}} of one slice: TFMA's 95 % confidence intervals
    (with compute_confidence_intervals), for the metrics it computed one for. TFMA's jackknife
    interval is the value plus or minus a multiple of its standard error, which on a small eval
    split runs past what the metric can be (an accuracy's upper bound of 1.05): clipped to it."""
    intervals = {}
    for item in metric_keys_and_values:
        if item.value.HasField("double_value") and item.HasField("confidence_interval"):
            bounds = item.confidence_interval
            low, high = _possible_range(item.key)
            intervals[_metric_name(item.key)] = {
                "value": round(item.value.double_value.value, 6),
                "lower": round(max(low, bounds.lower_bound.double_value.value), 6),
                "upper": round(min(high, bounds.upper_bound.double_value.value), 6),
            }
    return intervals


def overall_intervals(uri: str) -> dict:
    """slice_intervals of the overall slice of the evaluation in `uri`."""
    for slice_metrics in tfma.load_metrics(uri):
        if not slice_metrics.slice_key.single_slice_keys:
            return slice_intervals(slice_metrics.metric_keys_and_values)
    return {}


def validation_failures(uri: str) -> list[str]:
    """Why TFMA did not validate the model in `uri`, one reason per failed threshold; [] when
    it did, or when no thresholds were set (no validation result written). A result that cannot
    be read is itself the reason given, not passed over."""
    if not tf.io.gfile.glob(os.path.join(uri, "validations*")):
        return []
    try:
        result = tfma.load_validation_result(uri)
    except Exception as err:  # any reader error is reported as the reason
        return [f"the validation result in {uri} could not be read ({type(err).__name__}: {err})"]
    failures = [
        _describe_failure(f, _slice_class(v.slice_key)) for v in result.metric_validations_per_slice for f in v.failures
    ]
    for spec in result.missing_slices:
        if spec.feature_values:  # a gated class TFMA found no eval example of
            failures += [
                f"class {name!r} has no eval examples, so its gate (min_class_recall / max_class_recall_drop) "
                "cannot be judged: add eval images of it or lift the gate"
                for name in spec.feature_values.values()
            ]
    if not result.validation_ok and not failures:
        missing = ", ".join(str(s) for s in result.missing_slices) or "no reason recorded"
        failures.append(f"TFMA did not validate the model: missing slices {missing}")
    return failures


def read_evaluation(uri: str, num_classes: int) -> dict:
    """Candidate metrics overall and per class slice, the confusion matrix, and why the
    validation failed (if it did)."""
    overall, per_class, matrix, intervals = {}, {}, [], {}
    for slice_metrics in tfma.load_metrics(uri):
        keys = slice_metrics.slice_key.single_slice_keys
        values = slice_values(slice_metrics.metric_keys_and_values, one_class=bool(keys))
        if not keys:
            overall = values
            intervals = slice_intervals(slice_metrics.metric_keys_and_values)
        else:
            per_class[keys[0].bytes_value.decode("utf-8")] = values
    for plots in tfma.load_plots(uri):
        if plots.slice_key.single_slice_keys:
            continue
        for item in plots.plot_keys_and_values:
            plot = item.value.multi_class_confusion_matrix_at_thresholds
            if item.key.model_name == "baseline" or not plot.matrices:
                continue
            for entry in plot.matrices[0].entries:  # threshold 0: the arg-max class
                matrix.append([entry.actual_class_id, entry.predicted_class_id, entry.num_weighted_examples])
    failures = validation_failures(uri)
    judged = promotion.read(uri)
    if judged and not judged["promoted"]:
        failures.append(judged["reason"])
    if matrix:
        overall.update(argmax_class_metrics(matrix, num_classes))
    return {
        "overall": overall,
        "per_class": per_class,
        "failures": failures,
        "confusion_entries": matrix,
        "intervals": intervals,  # 95 % confidence intervals, overall: accuracy, the serving model's, the change
        "promotion": judged,
    }


def judgement(uri: str, num_classes: int, blessed: bool) -> dict:
    """One evaluation's verdict as the summaries show it (the golden set's, beside the eval split's)."""
    evaluation = read_evaluation(uri, num_classes)
    return {
        "blessed": blessed,
        "metrics": evaluation["overall"],
        "metric_intervals": evaluation["intervals"],
        "promotion": evaluation["promotion"],
        "not_blessed_because": evaluation["failures"],
        "per_class_metrics": evaluation["per_class"],
    }
