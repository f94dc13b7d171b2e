"""Pusher executor: only blessed, new models reach serving, as complete versions.

TFX's filesystem Pusher copies straight into the version folder (a crash leaves a partial
version TF Serving may load) and pushes a model again even when it is what serving has.
"""

import json

from absl import logging
from tfx.components.pusher import component as tfx_pusher_component
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.pusher.settings import PusherSettings
from components.serving import check, serving_dir


def _serving_check(staged_dir: str) -> None:
    outcome = check.check_in_fresh_process(staged_dir)
    logging.info("Serving check passed: %s", outcome)


class Executor(tfx_pusher.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        current = serving_dir.newest(base)
        if current and serving_dir.same_model(model_path, current):
            logging.info("Model %s is identical to serving version %s; not pushed again.", model_path, current)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("skipped_reason", f"identical to {current}")
            return
        pushed = serving_dir.publish(model_path, base, source=model_path, check=_serving_check)
        logging.info("Model pushed to %s.", pushed)
        settings = PusherSettings.from_dict(json.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY]))
        removed = serving_dir.prune(base, settings.keep_versions)
        if removed:
            logging.info("Removed old serving versions %s (keep_versions=%d).", removed, settings.keep_versions)
        self._MarkPushed(model_push, pushed_destination=pushed, pushed_version=pushed.rstrip("/").rsplit("/", 1)[-1])


class Pusher(tfx_pusher_component.Pusher):
    """TFX's Pusher with the atomic, de-duplicating executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
