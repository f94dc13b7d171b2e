"""ServingBaseline: the model now serving, as the Evaluator's baseline.

It replaces TFX's Resolver (latest blessed model), which (1) the open-source KFP backend does
not implement, and (2) on a cached re-run hands the Evaluator the candidate itself as the new
baseline, so TFX re-evaluates the same model against itself and pushes it again.
This component takes the candidate as an input: it runs again exactly when there is a new
candidate (otherwise its cached result stands, and so do the Evaluator's and the Pusher's),
and it reads the serving directory, which is the truth about what serves.

With nothing serving it still publishes its artifact, empty and marked so (an empty output
list breaks TFX's Kubeflow entrypoint, and a Kubeflow launcher registers every declared output
anyway); Graft's Evaluator executor then runs without a baseline, judging on absolute bounds.
"""

import os

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

from components.contract import SERVING_VERSION_PROPERTY
from components.serving import serving_dir

SERVING_DIR_KEY = "serving_dir"
MODEL_KEY = "model"
BASELINE_KEY = "baseline_model"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        baseline = output_dict[BASELINE_KEY][0]
        current = serving_dir.newest(exec_properties[SERVING_DIR_KEY])
        baseline.set_string_custom_property(SERVING_VERSION_PROPERTY, current or "")
        if current is None:
            logging.info("Nothing serves in %s: no baseline.", exec_properties[SERVING_DIR_KEY])
            fileio.makedirs(baseline.uri)
            return
        serving_dir.copy_tree(current, path_utils.serving_model_path(baseline.uri))
        logging.info("Baseline: serving version %s.", current)


class ServingBaselineSpec(types.ComponentSpec):
    PARAMETERS = {SERVING_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {BASELINE_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ServingBaseline(base_component.BaseComponent):
    SPEC_CLASS = ServingBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, serving_dir_path: str):
        super().__init__(
            spec=ServingBaselineSpec(
                model=model,
                serving_dir=os.path.abspath(serving_dir_path) if "://" not in serving_dir_path else serving_dir_path,
                baseline_model=types.Channel(type=standard_artifacts.Model),
            )
        )
