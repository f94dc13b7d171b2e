"""The Evaluator's native accuracy metrics give Keras's figures: TFMA's computation for the
metric (its own input conversion, then the combiner as Beam calls it: two partial accumulators
merged, as for jackknife buckets) on labels and probabilities Keras scores too."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.evaluator.metrics import SparseTopKAccuracy


def _tfma_value(metric, labels, probabilities):
    (computation,) = metric.computations(example_weighted=False)
    combiner = computation.combiner
    partials = []
    for part in np.array_split(np.arange(len(labels)), 2):
        accumulator = combiner.create_accumulator()
        for i in part:
            inputs = tfma.metrics.StandardMetricInputs(
                labels=np.array([labels[i]]), predictions=probabilities[i], example_weights=np.array([1.0])
            )
            accumulator = combiner.add_input(accumulator, inputs)
        partials.append(accumulator)
    ((key, value),) = combiner.extract_output(combiner.merge_accumulators(partials)).items()
    assert key.name == metric.name
    return value


@pytest.mark.parametrize("k", [1, 3])
def test_native_accuracy_equals_keras(k):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 6, size=200).astype(np.int32)
    probabilities = tf.nn.softmax(rng.normal(size=(200, 6)) + 1.5 * np.eye(6)[labels]).numpy().astype(np.float32)
    keras_metric = (
        tf.keras.metrics.SparseCategoricalAccuracy() if k == 1 else tf.keras.metrics.SparseTopKCategoricalAccuracy(k=k)
    )
    keras_metric.update_state(labels, probabilities)
    expected = float(keras_metric.result().numpy())
    assert 0.3 < expected < 0.99  # neither chance nor perfect: a count that can be wrong
    assert _tfma_value(SparseTopKAccuracy(name="acc", k=k), labels, probabilities) == pytest.approx(expected, abs=1e-6)
