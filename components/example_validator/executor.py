"""ExampleValidator executor whose anomalies stop the run with a readable message.

TFX's ExampleValidator only records anomalies (and a `blessed` property nothing downstream
checks by default); training on data that broke the schema is never what a user wants.
"""

import os

from tfx.components.example_validator import component as tfx_component
from tfx.components.example_validator import executor as tfx_validator
from tfx.components.example_validator import labels
from tfx.dsl.components.base import executor_spec


class DataAnomalyError(RuntimeError):
    pass


class Executor(tfx_validator.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._found = []
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._found:
            raise DataAnomalyError(
                "ExampleValidator found data that breaks the schema:\n  - "
                + "\n  - ".join(self._found)
                + "\nFix the data, or review and update the curated schema (schema_dir) if the change is intended."
            )
        return result

    def _Validate(self, inputs, outputs):
        anomalies = super()._Validate(inputs, outputs)
        split = os.path.basename(os.path.normpath(outputs[labels.SCHEMA_DIFF_PATH]))  # Split-<name>
        for feature, info in sorted(anomalies.anomaly_info.items()):
            self._found.append(f"{split}, feature {feature!r}: {info.short_description}: {info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            self._found.append(f"{split}, dataset: {info.short_description}: {info.description}")
        return anomalies


class ExampleValidator(tfx_component.ExampleValidator):
    """TFX's ExampleValidator with the stopping executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
