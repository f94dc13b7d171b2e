"""TFX's Evaluator, given no baseline when ServingBaseline found nothing serving, in a process
where tensorflow-text's ops are registered (TFMA loads text models, whose graphs hold them).

ServingBaseline always publishes its artifact (see there); an empty one, marked with an empty
serving version, must not reach TFMA as a model to load.
"""

import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds: NFC, WordPiece)
from tfx.components.evaluator import component as tfx_component
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components.contract import SERVING_VERSION_PROPERTY
from components.memory import release_freed_memory


def nothing_serving(baseline) -> bool:
    """Whether a ServingBaseline artifact stands for an empty serving directory."""
    return not baseline.get_custom_property(SERVING_VERSION_PROPERTY)


class Executor(tfx_evaluator.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        release_freed_memory()  # what the Trainer freed, before TFMA loads the models again
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and nothing_serving(input_dict[key][0]):
            input_dict = {**input_dict, key: []}
        return super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx_component.Evaluator):
    """TFX's Evaluator with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
