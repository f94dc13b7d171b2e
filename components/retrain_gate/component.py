"""RetrainGate: the node between ExampleGen and everything that trains.

It compares this run's training key (the span and input fingerprint ExampleGen recorded, the
model config, the model code) with the one recorded in the provenance of the version now
serving, and publishes a `RetrainDecision` with the int custom property `retrain` (1 or 0) and
its `reason`. When the data is new and a model serves, it first compares the new span with the
data that model was trained on (components.drift): a check that fires with `on_drift: block`
makes the decision "do not train". pipeline/pipeline.py puts every later node inside
`tfx.dsl.Cond(decision.custom_property("retrain") == 1)`: TFX's launcher then skips them
(locally), and the Kubeflow v2 compiler turns the predicate into each task's trigger condition.

Its cache key holds the serving version's state (`serving_state`, read where the local pipeline
is built), so a cached decision is replayed only while nothing was pushed or rolled back; the
Kubeflow compiler turns its cache off instead (a spec is compiled once, run many times).
"""

from __future__ import annotations

import hashlib
import json

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from components import files
from components.contract import PROVENANCE_FILE
from components.drift import compare as drift
from components.retrain_gate import decision, refusals
from components.retrain_gate.settings import RetrainGateSettings
from components.serving import provenance, serving_dir

EXAMPLES_KEY = "examples"
DECISION_KEY = "decision"
CUSTOM_CONFIG_KEY = "custom_config"
SERVING_STATE_KEY = "serving_state"
RETRAIN_PROPERTY = "retrain"  # int 1 | 0: the Cond predicate reads it
REASON_PROPERTY = "reason"
TRAINING_KEY_PROPERTY = "training_key"  # JSON: what the Pusher records in provenance.json
EVALUATION_KEY_PROPERTY = "evaluation_key"  # what judged it (golden set, code): the Pusher records it with a refusal
DRIFT_PROPERTY = "drift"  # JSON: the drift report (components.drift.compare), "" when none ran
DECISION_FILE = "decision.json"


class RetrainDecision(types.Artifact):
    """Whether this run trains, and why (custom properties `retrain`, `reason`, `training_key`)."""

    TYPE_NAME = "components.RetrainDecision"  # importable by this path: see components/__init__.py


def serving_state(serving_dir_path: str) -> str:
    """The newest serving version and a digest of its provenance ("" when nothing serves), and the
    refusals recorded: the gate's cache key changes whenever a push or a rollback changes what
    serves, or a candidate is refused."""
    refused_dir = f"{serving_dir_path.rstrip('/')}/{refusals.REFUSED_DIR}"
    refused = sorted(files.listdir(refused_dir)) if files.isdir(refused_dir) else []
    digest = hashlib.sha256()
    for name in refused:  # their contents: a refusal rewritten against another version counts
        digest.update(name.encode() + b"\0" + files.read(f"{refused_dir}/{name}"))
    refused_state = f"|refused:{digest.hexdigest()[:16]}" if refused else ""
    newest = serving_dir.newest(serving_dir_path)
    if newest is None:
        return refused_state
    path = f"{newest}/{PROVENANCE_FILE}"
    record = files.read(path) if files.exists(path) else b""
    return f"{newest}:{hashlib.sha256(record).hexdigest()[:16]}{refused_state}"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        settings = RetrainGateSettings.from_dict(json.loads(exec_properties[CUSTOM_CONFIG_KEY]))
        examples = input_dict[EXAMPLES_KEY][0]
        data = provenance.data_record(examples)
        key = decision.training_key(
            data["span"],
            data["input_fingerprint"],
            settings.model_config,
            settings.model_code,
            data["data_listing"],
        )
        current = serving_dir.newest(settings.serving_dir)
        record = provenance.read(current) if current else None
        version = current.rstrip("/").rsplit("/", 1)[-1] if current else None
        refused = refusals.find(settings.serving_dir, key) if not settings.force else None
        retrain, reason = decision.decide(key, version, record, settings.force, refused, settings.evaluation_key)
        report = None
        if retrain and current and not settings.force and settings.drift.on_drift != "off":
            if decision.new_data(key, record):
                report = drift.compare(settings.drift, examples.uri, current, record)
                if report["blocked"]:
                    retrain, reason = False, drift.blocked_reason(report)
        logging.info("RetrainGate: %s (%s).", "training" if retrain else "not training", reason)
        out = output_dict[DECISION_KEY][0]
        out.set_int_custom_property(RETRAIN_PROPERTY, int(retrain))
        out.set_string_custom_property(REASON_PROPERTY, reason)
        out.set_string_custom_property(TRAINING_KEY_PROPERTY, json.dumps(key, sort_keys=True))
        out.set_string_custom_property(EVALUATION_KEY_PROPERTY, settings.evaluation_key or "")
        out.set_string_custom_property(DRIFT_PROPERTY, json.dumps(report) if report else "")
        fileio.makedirs(out.uri)
        with fileio.open(f"{out.uri}/{DECISION_FILE}", "w") as f:
            written = {"retrain": retrain, "reason": reason, "training_key": key, "drift": report}
            f.write(json.dumps(written, indent=1, sort_keys=True))


class RetrainGateSpec(types.ComponentSpec):
    PARAMETERS = {
        CUSTOM_CONFIG_KEY: ExecutionParameter(type=str),
        SERVING_STATE_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {DECISION_KEY: ChannelParameter(type=RetrainDecision)}


class RetrainGate(base_component.BaseComponent):
    SPEC_CLASS = RetrainGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, settings: RetrainGateSettings, state: str = ""):
        super().__init__(
            spec=RetrainGateSpec(
                examples=examples,
                custom_config=json_utils.dumps(settings.to_dict()),
                serving_state=state,
                decision=types.Channel(type=RetrainDecision),
            )
        )

    def retrains(self):
        """The predicate for `tfx.dsl.Cond`: this run's decision is to train."""
        return self.outputs[DECISION_KEY].future()[0].custom_property(RETRAIN_PROPERTY) == 1
