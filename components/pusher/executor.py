"""Pusher: only blessed, new models reach serving, as complete versions, and only when the model
they were judged against still serves.

TFX's filesystem Pusher copies straight into the version folder (a crash leaves a partial
version TF Serving may load) and pushes a model again even when it is what serving has. Two
pipelines (or two runs) pushing to one serving directory: each candidate was compared with the
version ServingBaseline read; if another push landed since, the comparison no longer holds and
the push is refused with that reason (optimistic concurrency), under the serving directory's
publish lock, so that the check and the publish are one step.
"""

import json
import os

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils, proto_utils

from components import locks
from components.contract import (
    PROVENANCE_FILE,
    PUBLISH_LOCK_FILE,
    SERVING_VERSION_PROPERTY,
    TFLITE_CHECK_FILE,
    TFLITE_DIR,
)
from components.evaluator.results import read_evaluation
from components.memory import release_freed_memory
from components.pusher.settings import PusherSettings
from components.retrain_gate import refusals
from components.retrain_gate.component import EVALUATION_KEY_PROPERTY, TRAINING_KEY_PROPERTY, RetrainDecision
from components.serving import check, provenance, serving_dir

BASELINE_KEY = "baseline_model"  # ServingBaseline's output: which version the candidate was judged against
EXAMPLES_KEY = "examples"  # ExampleGen's output: the data the model came from (provenance)
EVALUATION_KEY = "evaluation"  # the Evaluator's output: the metrics that blessed it (provenance)
DECISION_KEY = "decision"  # the RetrainGate's output: the training key the next run compares with
GOLDEN_BLESSING_KEY = "golden_blessing"  # the GoldenEvaluator's: a push needs its blessing too
GOLDEN_EVALUATION_KEY = "golden_evaluation"  # the GoldenEvaluator's metrics (the refusal's reason, provenance)
PUBLISH_WAIT_SECONDS = 600  # another publish to the same serving directory: wait for it this long


def _serving_check(staged_dir: str) -> None:
    release_freed_memory()  # a second TensorFlow process starts beside this one
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
        settings = PusherSettings.from_dict(json.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY]))
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        num_classes = len(settings.resolved_config.get("class_names") or [])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            self._remember_refusal(input_dict, base, evaluation_refusal(input_dict, num_classes))
            return
        refused = golden_refusal(input_dict, num_classes)
        if refused:
            logging.warning("Not pushed: %s", refused)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("skipped_reason", refused)
            self._remember_refusal(input_dict, base, refused)
            return
        model_path = self.GetModelPath(input_dict)
        failures = tflite_failures(model_path)
        if failures and settings.tflite_on_failure == "refuse":
            logging.warning("Not pushed (export.on_failure=refuse): %s", "; ".join(failures))
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("skipped_reason", "TFLite check failed: " + "; ".join(failures))
            self._remember_refusal(input_dict, base, "TFLite check failed: " + "; ".join(failures))
            return
        if failures:
            logging.warning("Pushing without the TFLite model(s) that failed their check: %s", "; ".join(failures))
        judged_against = judged_against_version(input_dict)
        holder = locks.describe("publish", model_path)
        with locks.acquire(base, PUBLISH_LOCK_FILE, holder, wait_seconds=PUBLISH_WAIT_SECONDS):
            current = serving_dir.newest(base)
            if judged_against is not None and _version(current) != _version(judged_against):
                reason = (
                    f"serving changed since the candidate was judged: it was compared with "
                    f"{judged_against or 'nothing serving'}, but {current or 'nothing'} serves now (another run pushed "
                    "in between); not pushed: run again to judge it against what serves"
                )
                logging.warning("Not pushed: %s", reason)
                self._MarkNotPushed(model_push)
                model_push.set_string_custom_property("skipped_reason", reason)
                return
            if current and serving_dir.same_model(model_path, current):
                logging.info("Model %s is identical to serving version %s; not pushed again.", model_path, current)
                self._MarkNotPushed(model_push)
                model_push.set_string_custom_property("skipped_reason", f"identical to {current}")
                return
            record = self._provenance(input_dict, settings, model_path, replaced=current)
            pushed = serving_dir.publish(
                model_path,
                base,
                source=model_path,
                check=_serving_check,
                files={PROVENANCE_FILE: provenance.dumps(record)},
            )
            logging.info("Model pushed to %s.", pushed)
            removed = serving_dir.prune(base, settings.keep_versions)
        if removed:
            logging.info("Removed old serving versions %s (keep_versions=%d).", removed, settings.keep_versions)
        self._MarkPushed(model_push, pushed_destination=pushed, pushed_version=pushed.rstrip("/").rsplit("/", 1)[-1])
        model_push.set_string_custom_property("provenance", json.dumps(record, sort_keys=True, default=str))

    def _remember_refusal(self, input_dict, base: str, reason: str) -> None:
        """Records the refused candidate's training key in the serving directory (refusals.py), so
        that the RetrainGate does not train it again while the model it was judged against serves."""
        decision = input_dict.get(DECISION_KEY)
        key = decision[0].get_string_custom_property(TRAINING_KEY_PROPERTY) if decision else ""
        evaluation_key = decision[0].get_string_custom_property(EVALUATION_KEY_PROPERTY) if decision else ""
        judged_against = judged_against_version(input_dict)
        if not key or not evaluation_key or judged_against is None:
            return
        try:  # best effort: a refusal that cannot be remembered only costs a retrain
            refusals.record(
                base,
                json.loads(key),
                _version(judged_against),
                reason,
                self._context.pipeline_run_id if self._context else None,
                evaluation_key,
            )
        except Exception as err:  # noqa: BLE001
            logging.warning("The refusal could not be recorded in %s (%s); the next run retrains", base, err)

    def _provenance(self, input_dict, settings: PusherSettings, model_path: str, replaced: str | None) -> dict:
        examples = input_dict.get(EXAMPLES_KEY) or [None]
        evaluated = input_dict.get(EVALUATION_KEY)
        class_names = settings.resolved_config.get("class_names") or []
        try:  # the record is best-effort: an evaluation that cannot be read must not stop a blessed push
            evaluation = read_evaluation(evaluated[0].uri, len(class_names)) if evaluated else {}
        except Exception as err:  # noqa: BLE001  (recorded in the provenance instead)
            logging.warning("Provenance without metrics: the evaluation could not be read (%s)", err)
            evaluation = {"error": f"{type(err).__name__}: {err}"}
        decision = input_dict.get(DECISION_KEY)
        key = decision[0].get_string_custom_property(TRAINING_KEY_PROPERTY) if decision else ""
        golden = input_dict.get(GOLDEN_EVALUATION_KEY)
        try:
            golden_evaluation = read_evaluation(golden[0].uri, len(class_names)) if golden else None
        except Exception as err:  # noqa: BLE001  (recorded instead, as for the main evaluation)
            golden_evaluation = {"error": f"{type(err).__name__}: {err}"}
        return provenance.build(
            golden=golden_evaluation,
            examples=provenance.newest(examples) if examples[0] is not None else None,
            window=examples if len(examples) > 1 else None,
            training_key=json.loads(key) if key else None,
            evaluation=evaluation,
            config=settings.resolved_config,
            code=settings.code_version,
            run_id=self._context.pipeline_run_id if self._context else None,
            replaced=replaced,
            model_uri=model_path,
        )


def _failures(evaluated, num_classes: int) -> str:
    """Why an evaluation did not bless the candidate, read from it (informative only: the blessing
    has decided)."""
    try:
        failures = read_evaluation(evaluated[0].uri, num_classes)["failures"] if evaluated else []
    except Exception as err:  # noqa: BLE001
        failures = [f"its evaluation could not be read ({err})"]
    return "; ".join(failures) or "no reason recorded"


def evaluation_refusal(input_dict, num_classes: int) -> str:
    """Why the Evaluator did not bless the candidate."""
    return "not blessed by the Evaluator: " + _failures(input_dict.get(EVALUATION_KEY), num_classes)


def golden_refusal(input_dict, num_classes: int) -> str:
    """Why the golden set's Evaluator did not bless the candidate ("" when it did, or when there
    is no golden set)."""
    blessing = input_dict.get(GOLDEN_BLESSING_KEY)
    if not blessing or model_utils.is_model_blessed(blessing[0]):  # TFX's own test, as for model_blessing
        return ""
    return "the golden set (eval_data) did not bless it: " + _failures(
        input_dict.get(GOLDEN_EVALUATION_KEY), num_classes
    )


def _version(version_dir: str | None) -> str:
    """A version folder's number ("" for none): paths to one version can be written differently."""
    return os.path.basename((version_dir or "").rstrip("/"))


def judged_against_version(input_dict) -> str | None:
    """The serving version ServingBaseline handed the Evaluator ("" for nothing serving), or
    None when the Pusher was given no baseline."""
    baseline = input_dict.get(BASELINE_KEY)
    if not baseline:
        return None
    return baseline[0].get_string_custom_property(SERVING_VERSION_PROPERTY)


class PusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        BASELINE_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        DECISION_KEY: ChannelParameter(type=RetrainDecision, optional=True),
        GOLDEN_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        GOLDEN_EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class Pusher(base_component.BaseComponent):
    """TFX's Pusher spec plus the baseline the candidate was judged against, with the atomic,
    de-duplicating, judged-against-what-serves executor above."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model,
        model_blessing,
        baseline_model,
        push_destination,
        custom_config: dict,
        examples=None,
        evaluation=None,
        decision=None,
        golden_blessing=None,
        golden_evaluation=None,
    ):
        super().__init__(
            spec=PusherSpec(
                golden_blessing=golden_blessing,
                golden_evaluation=golden_evaluation,
                model=model,
                model_blessing=model_blessing,
                baseline_model=baseline_model,
                examples=examples,
                evaluation=evaluation,
                decision=decision,
                push_destination=push_destination,
                custom_config=json_utils.dumps(custom_config),
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            )
        )
