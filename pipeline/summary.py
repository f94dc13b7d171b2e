"""The end-of-run facts, read back from ML Metadata and the run's artifacts.

Reading MLMD (not the orchestrator's in-memory state) makes the summary right for cached
runs too: a cached component's outputs are linked to this run like fresh ones.
"""

from __future__ import annotations

import json
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.contract import CHOICES_FILE, HISTORY_FILE, TFLITE_CHECK_FILE, TFLITE_DIR, tflite_file
from components.evaluator.results import judgement, read_evaluation


def _store(metadata_path: str):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_outputs(metadata_path: str, pipeline_name: str, run_id: str | None = None):
    """{node_id: {"execution": Execution, "outputs": {key: [Artifact]}}} of run `run_id` (TFX's
    pipeline run context), or of the newest run of the pipeline. By id, a run reports its own
    executions, whatever another run of the pipeline did meanwhile."""
    store = _store(metadata_path)
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return {}
    if run_id is not None:
        run = store.get_context_by_type_and_name("pipeline_run", run_id)
        if run is None:
            return {}
    else:
        pipeline_execution_ids = {e.id for e in store.get_executions_by_context(pipeline.id)}
        runs = [
            c
            for c in store.get_contexts_by_type("pipeline_run")
            if any(e.id in pipeline_execution_ids for e in store.get_executions_by_context(c.id))
        ]
        if not runs:
            return {}
        run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(run.id)
    nodes = {}
    for execution in executions:
        node_id = None
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + ".") and context.type_id != run.type_id:
                node_id = context.name[len(pipeline_name) + 1 :]
        if node_id:
            nodes[node_id] = {"execution": execution, "outputs": {}}
    events = store.get_events_by_execution_ids([n["execution"].id for n in nodes.values()])
    artifact_ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(artifact_ids)}
    by_execution = {n["execution"].id: n for n in nodes.values()}
    for event in events:
        if event.type != metadata_store_pb2.Event.OUTPUT or event.artifact_id not in artifacts:
            continue
        key = event.path.steps[0].key if event.path.steps else "output"
        by_execution[event.execution_id]["outputs"].setdefault(key, []).append(artifacts[event.artifact_id])
    return nodes


def _prop(artifact, name, default=None):
    value = artifact.custom_properties.get(name)
    if value is None:
        return default
    return value.string_value or value.int_value or value.double_value


def collect_summary(config, run_id: str | None = None, progress=None) -> dict:
    nodes = run_outputs(config.metadata_path, config.pipeline_name, run_id)
    summary = {
        "run_id": run_id,
        "kind": config.kind,
        "blessed": False,
        "pushed_model_dir": None,
        "metrics": {},
        "ingest": None,
        "component_seconds": {},
        "component_state": {},
        "not_blessed_because": [],
        "retrain": None,
        "run_skipped_reason": None,
        "drift": None,  # the drift checks' report, when the RetrainGate ran them (components.drift)
    }
    states = {
        metadata_store_pb2.Execution.COMPLETE: "complete",
        metadata_store_pb2.Execution.CACHED: "cached",
        metadata_store_pb2.Execution.FAILED: "failed",
    }
    for node_id, node in nodes.items():
        execution = node["execution"]
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        summary["component_seconds"][node_id] = round(seconds, 1)
        summary["component_state"][node_id] = states.get(execution.last_known_state, "other")
    if progress is not None:  # measured around each component: more exact than MLMD's timestamps
        summary["component_seconds"].update(progress.seconds)
    example_gen = next((nodes[n] for n in ("ImageExampleGen", "TextExampleGen", "ImportExampleGen") if n in nodes), {})
    examples = example_gen.get("outputs", {}).get("examples")
    if examples:
        report_path = os.path.join(examples[0].uri, "ingest", "report.json")
        if os.path.exists(report_path):
            with open(report_path, encoding="utf-8") as f:
                report = json.load(f)
            summary["ingest"] = {
                k: report[k]
                for k in (
                    "total",
                    "accepted",
                    "quarantined",
                    "skipped",
                    "skipped_files",  # each with its rule: a duplicate, in the golden set, ...
                    "accepted_per_split",
                    "class_names",
                    "truncated",
                )
                if k in report
            }
    decision = nodes.get("RetrainGate", {}).get("outputs", {}).get("decision")
    if decision:
        retrain, reason = bool(_prop(decision[0], "retrain", 0)), _prop(decision[0], "reason", "")
        summary["retrain"] = {"retrain": retrain, "reason": reason}
        drift = _prop(decision[0], "drift", "")
        summary["drift"] = json.loads(drift) if drift else None
        # For a scheduler: set exactly when the run stopped after the gate (exit code 0).
        summary["run_skipped_reason"] = None if retrain else reason
        if not retrain:
            summary["push_skipped_reason"] = "nothing trained: " + reason
    evaluator = nodes.get("Evaluator", {}).get("outputs", {})
    if evaluator.get("blessing"):
        summary["blessed"] = bool(_prop(evaluator["blessing"][0], "blessed", 0))
    if evaluator.get("evaluation"):
        evaluation = read_evaluation(evaluator["evaluation"][0].uri, len(config.class_names or []))
        summary["metrics"], summary["not_blessed_because"] = evaluation["overall"], evaluation["failures"]
        summary["per_class_metrics"] = evaluation["per_class"]
        summary["metric_intervals"] = evaluation["intervals"]  # TFMA's 95 % intervals, overall
        summary["promotion"] = evaluation["promotion"]  # the rule, the accuracy change's interval, the verdict
        summary["confusion_entries"] = evaluation["confusion_entries"]
        summary["evaluation_uri"] = evaluator["evaluation"][0].uri
    golden = nodes.get("GoldenEvaluator", {}).get("outputs", {})
    if golden.get("evaluation"):
        summary["golden"] = golden_section(
            golden, nodes.get("GoldenExampleGen", {}).get("outputs", {}).get("examples"), config
        )
        if not summary["golden"]["blessed"]:  # a push needs both blessings (the Pusher checks them)
            summary["blessed"] = False
            summary["not_blessed_because"] = summary.get("not_blessed_because", []) + [
                f"golden set: {reason}" for reason in summary["golden"]["not_blessed_because"]
            ]
    model_run = nodes.get("Trainer", {}).get("outputs", {}).get("model_run")
    for key, name in (("training_history", HISTORY_FILE), ("training_choices", CHOICES_FILE)):
        if model_run and os.path.exists(os.path.join(model_run[0].uri, name)):
            with open(os.path.join(model_run[0].uri, name)) as f:
                summary[key] = json.load(f)
    model = nodes.get("Trainer", {}).get("outputs", {}).get("model")
    tflite_check = os.path.join(model[0].uri, "Format-Serving", TFLITE_DIR, TFLITE_CHECK_FILE) if model else ""
    if tflite_check and os.path.exists(tflite_check):
        with open(tflite_check) as f:
            summary["tflite"] = json.load(f)
    pushed = nodes.get("Pusher", {}).get("outputs", {}).get("pushed_model")
    if pushed:
        artifact = pushed[0]
        summary["pushed"] = bool(_prop(artifact, "pushed", 0))
        summary["pushed_model_dir"] = _prop(artifact, "pushed_destination") if summary["pushed"] else None
        summary["push_skipped_reason"] = _prop(artifact, "skipped_reason")
        # A cached Pusher pushed nothing in this run, whatever it did when it first ran.
        if summary["component_state"].get("Pusher") == "cached":
            summary["pushed"], summary["pushed_model_dir"] = False, None
            summary["push_skipped_reason"] = "cached: nothing changed since the last run"
    if "tflite" in summary:
        pushed_dir = summary.get("pushed_model_dir")
        for kind, entry in summary["tflite"]["models"].items():
            entry["pushed"] = bool(pushed_dir) and os.path.exists(
                os.path.join(pushed_dir, TFLITE_DIR, tflite_file(kind))
            )
    return summary


def golden_section(evaluator_outputs: dict, examples, config) -> dict:
    """The golden set's evaluation (GoldenEvaluator) and ingestion (GoldenExampleGen)."""
    section = {
        "eval_data": config.eval_data,
        **judgement(
            evaluator_outputs["evaluation"][0].uri,
            len(config.class_names or []),
            bool(_prop(evaluator_outputs["blessing"][0], "blessed", 0)),
        ),
    }
    report_path = os.path.join(examples[0].uri, "ingest", "report.json") if examples else ""
    if report_path and os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        section["ingest"] = {k: report[k] for k in ("total", "accepted", "quarantined", "skipped") if k in report}
    return section
