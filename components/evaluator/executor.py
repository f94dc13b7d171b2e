"""TFX's Evaluator, given no baseline when ServingBaseline found nothing serving, in a process
where tensorflow-text's ops are registered (TFMA loads text models, whose graphs hold them);
then Graft's promotion rule on the confidence interval of the accuracy change (promotion.py),
which can only withdraw a blessing TFMA gave, never grant one.

ServingBaseline always publishes its artifact (see there); an empty one, marked with an empty
serving version, must not reach TFMA as a model to load.
"""

import json
import os

import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds: NFC, WordPiece)
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as tfx_constants
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.contract import SERVING_VERSION_PROPERTY
from components.evaluator import promotion
from components.evaluator.metrics import ACCURACY
from components.evaluator.results import overall_intervals
from components.evaluator.settings import EvaluatorSettings
from components.memory import release_freed_memory

PROMOTION_KEY = "promotion"  # the EvaluatorSettings, as JSON


def nothing_serving(baseline) -> bool:
    """Whether a ServingBaseline artifact stands for an empty serving directory."""
    return not baseline.get_custom_property(SERVING_VERSION_PROPERTY)


class Executor(tfx_evaluator.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        release_freed_memory()  # what the Trainer freed, before TFMA loads the models again
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and nothing_serving(input_dict[key][0]):
            input_dict = {**input_dict, key: []}
        super().Do(input_dict, output_dict, exec_properties)
        if input_dict.get(key):
            settings = EvaluatorSettings.from_dict(json.loads(exec_properties[PROMOTION_KEY]))
            judge_promotion(settings, output_dict)


def judge_promotion(settings: EvaluatorSettings, output_dict) -> None:
    """Applies the promotion rule to a candidate judged against a serving model: records the
    rule, the interval and the verdict in the evaluation, and withdraws a blessing the rule refuses."""
    evaluation = output_dict[standard_component_specs.EVALUATION_KEY][0]
    blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
    change = overall_intervals(evaluation.uri).get(f"{ACCURACY}_change")
    promoted, reason = promotion.judge(settings.promote_when, settings.max_accuracy_drop, change)
    promotion.write(
        evaluation.uri,
        {"promote_when": settings.promote_when, "accuracy_change": change, "promoted": promoted, "reason": reason},
    )
    logging.info("Promotion (%s): %s", settings.promote_when, reason)
    blessed = blessing.get_int_custom_property(tfx_constants.ARTIFACT_PROPERTY_BLESSED_KEY)
    if promoted or blessed != tfx_constants.BLESSED_VALUE:
        return
    fileio.remove(os.path.join(blessing.uri, tfx_constants.BLESSED_FILE_NAME))
    with fileio.open(os.path.join(blessing.uri, tfx_constants.NOT_BLESSED_FILE_NAME), "w") as f:
        f.write("")
    blessing.set_int_custom_property(tfx_constants.ARTIFACT_PROPERTY_BLESSED_KEY, tfx_constants.NOT_BLESSED_VALUE)


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS, PROMOTION_KEY: ExecutionParameter(type=str)}


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (its spec and executor) with the promotion rule above."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples, model, baseline_model, eval_config, example_splits: list, settings: EvaluatorSettings):
        super().__init__(
            spec=EvaluatorSpec(
                examples=examples,
                model=model,
                baseline_model=baseline_model,
                eval_config=eval_config,
                example_splits=json_utils.dumps(example_splits),
                fairness_indicator_thresholds=json_utils.dumps(None),
                promotion=json_utils.dumps(settings.to_dict()),
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
