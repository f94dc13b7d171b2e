"""Pusher executor: only blessed, new models reach serving, as complete versions.

TFX's filesystem Pusher copies straight into the version folder (a crash leaves a partial
version TF Serving may load) and pushes a model again even when it is what serving has.
"""

import json
import os

import tensorflow as tf
from absl import logging
from tfx.components.pusher import component as tfx_pusher_component
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.contract import TFLITE_CHECK_FILE, TFLITE_DIR
from components.pusher.settings import PusherSettings
from components.serving import check, serving_dir


def _serving_check(staged_dir: str) -> None:
    outcome = check.check_in_fresh_process(staged_dir)
    logging.info("Serving check passed: %s", outcome)


def tflite_failures(model_dir: str) -> list[str]:
    """The reasons of the TFLite models that failed the Trainer's check (none when no TFLite
    model was asked for). Failed models are not in the model folder, so they are never pushed."""
    path = os.path.join(model_dir, TFLITE_DIR, TFLITE_CHECK_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        models = json.load(f)["models"]
    return [entry["reason"] for entry in models.values() if not entry["passed"]]


class Executor(tfx_pusher.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        settings = PusherSettings.from_dict(json.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY]))
        failures = tflite_failures(model_path)
        if failures and settings.tflite_on_failure == "refuse":
            logging.warning("Not pushed (export.on_failure=refuse): %s", "; ".join(failures))
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("skipped_reason", "TFLite check failed: " + "; ".join(failures))
            return
        if failures:
            logging.warning("Pushing without the TFLite model(s) that failed their check: %s", "; ".join(failures))
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
        removed = serving_dir.prune(base, settings.keep_versions)
        if removed:
            logging.info("Removed old serving versions %s (keep_versions=%d).", removed, settings.keep_versions)
        self._MarkPushed(model_push, pushed_destination=pushed, pushed_version=pushed.rstrip("/").rsplit("/", 1)[-1])


class Pusher(tfx_pusher_component.Pusher):
    """TFX's Pusher with the atomic, de-duplicating executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
