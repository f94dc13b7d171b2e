"""TFMA configuration: what is measured and what blesses a model.

The model is evaluated as a generic SavedModel through its serving_default signature with
the prediction output named explicitly: TFMA's Keras path reloads the model with Keras and
recomputes the compiled loss, which measured ~5x slower on the same data.
"""
import tensorflow_model_analysis as tfma

from components.signatures import PROBABILITIES
from components.transform_module import LABEL_KEY

ACCURACY = "sparse_categorical_accuracy"


def build_eval_config(min_accuracy: float, max_accuracy_drop: float) -> tfma.EvalConfig:
    """Accuracy must reach `min_accuracy` and not fall more than `max_accuracy_drop` below
    the model now serving (TFMA ignores the second bound when there is no baseline)."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_accuracy_drop - 1e-10},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_default",
            label_key=LABEL_KEY,
            prediction_key=PROBABILITIES,
            model_type="tf_generic",
        )],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold),
        ])],
    )
