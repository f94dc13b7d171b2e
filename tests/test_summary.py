"""The end-of-run facts read back from TFMA's outputs: nothing passed over in silence."""

import math

import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

from components.evaluator.results import slice_intervals, slice_values, validation_failures


def _metric(name: str, value: float, class_id=None):
    item = metrics_for_slice_pb2.MetricsForSlice().metric_keys_and_values.add()
    item.key.name = name
    if class_id is not None:
        item.key.sub_key.class_id.value = class_id
    item.value.double_value.value = value
    return item


def test_undefined_metrics_are_not_applicable_not_zero_nor_dropped():
    items = [_metric("sparse_categorical_accuracy", 0.9), _metric("auc", 0.0, class_id=1), _metric("loss", math.nan)]
    # A per-class slice holds one class: its AUC is undefined (TFMA says 0.0); a NaN is kept as such.
    assert slice_values(items, one_class=True) == {
        "sparse_categorical_accuracy": 0.9,
        "auc/class_1": None,
        "loss": None,
    }
    assert slice_values(items, one_class=False)["auc/class_1"] == 0.0  # overall: a real (if poor) AUC


def _with_interval(item, lower: float, upper: float, is_diff: bool = False):
    item.key.is_diff = is_diff
    item.confidence_interval.lower_bound.double_value.value = lower
    item.confidence_interval.upper_bound.double_value.value = upper
    return item


def test_an_interval_never_runs_past_what_its_metric_can_be():
    """TFMA's jackknife interval is value +- t * standard error: on 11 eval images at 0.909 it
    said 0.7723-1.0455 (seen in a run's summary). An accuracy is at most 1, its change against the
    serving model at least -1; a loss has no bound to clip to."""
    items = [
        _with_interval(_metric("sparse_categorical_accuracy", 0.9091), 0.7723, 1.0455),
        _with_interval(_metric("sparse_categorical_accuracy", -0.95), -1.2, -0.7, is_diff=True),
        _with_interval(_metric("auc", 0.02, class_id=1), -0.03, 0.07),
        _with_interval(_metric("loss", 0.1), -0.2, 0.4),
    ]
    assert slice_intervals(items) == {
        "sparse_categorical_accuracy": {"value": 0.9091, "lower": 0.7723, "upper": 1.0},
        "sparse_categorical_accuracy_change": {"value": -0.95, "lower": -1.0, "upper": -0.7},
        "auc/class_1": {"value": 0.02, "lower": 0.0, "upper": 0.07},
        "loss": {"value": 0.1, "lower": -0.2, "upper": 0.4},
    }


def _write_validation(path: str, result: validation_result_pb2.ValidationResult) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(result.SerializeToString())


def test_a_validation_result_is_read_or_its_failure_said(tmp_path):
    assert validation_failures(str(tmp_path)) == []  # no thresholds: no result written

    failed = validation_result_pb2.ValidationResult(validation_ok=False)
    failure = failed.metric_validations_per_slice.add().failures.add()
    failure.metric_key.name = "sparse_categorical_accuracy"
    failure.metric_value.double_value.value = 0.41
    failure.metric_threshold.value_threshold.lower_bound.value = 0.8
    (tmp_path / "failed").mkdir()
    _write_validation(str(tmp_path / "failed" / "validations.tfrecord"), failed)
    assert validation_failures(str(tmp_path / "failed")) == [
        "sparse_categorical_accuracy 0.4100 is below the required 0.8000 (min_accuracy)"
    ]

    # A per-class gate names the class and the option.
    by_class = validation_result_pb2.ValidationResult(validation_ok=False)
    validation = by_class.metric_validations_per_slice.add()
    validation.slice_key.single_slice_keys.add(column="label_name", bytes_value=b"digit_7")
    failure = validation.failures.add()
    failure.metric_key.name, failure.metric_key.is_diff = "sparse_categorical_accuracy", True
    failure.metric_value.double_value.value = -0.35
    failure.metric_threshold.change_threshold.absolute.value = -0.2
    failure = validation.failures.add()
    failure.metric_key.name = "sparse_categorical_accuracy"
    failure.metric_value.double_value.value = 0.3
    failure.metric_threshold.value_threshold.lower_bound.value = 0.5
    (tmp_path / "by_class").mkdir()
    _write_validation(str(tmp_path / "by_class" / "validations.tfrecord"), by_class)
    assert validation_failures(str(tmp_path / "by_class")) == [
        "class 'digit_7': recall (sparse_categorical_accuracy on its eval examples) changed by -0.3500 against the "
        "model now serving; the allowed absolute change is >= -0.2000 (max_class_recall_drop)",
        "class 'digit_7': recall (sparse_categorical_accuracy on its eval examples) 0.3000 is below the required "
        "0.5000 (min_class_recall)",
    ]

    # A gated class with no eval example is named, not left as a bare "missing slices".
    missing = validation_result_pb2.ValidationResult(validation_ok=False)
    missing.missing_slices.add().feature_values["label_name"] = "digit_9"
    (tmp_path / "missing").mkdir()
    _write_validation(str(tmp_path / "missing" / "validations.tfrecord"), missing)
    assert validation_failures(str(tmp_path / "missing")) == [
        "class 'digit_9' has no eval examples, so its gate (min_class_recall / max_class_recall_drop) cannot be "
        "judged: add eval images of it or lift the gate"
    ]

    (tmp_path / "unexplained").mkdir()
    _write_validation(str(tmp_path / "unexplained" / "validations.tfrecord"), validation_result_pb2.ValidationResult())
    assert validation_failures(str(tmp_path / "unexplained"))[0].startswith("TFMA did not validate the model")

    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "validations.tfrecord").write_bytes(b"not a record")
    [reason] = validation_failures(str(tmp_path / "corrupt"))
    assert reason.startswith(f"the validation result in {tmp_path / 'corrupt'} could not be read")
