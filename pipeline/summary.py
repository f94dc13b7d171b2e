"""The end-of-run facts, read back from ML Metadata and the run's artifacts.

Reading MLMD (not the orchestrator's in-memory state) makes the summary right for cached
runs too: a cached component's outputs are linked to this run like fresh ones.
"""
from __future__ import annotations

import json
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2


def _store(metadata_path: str):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _latest_run_outputs(store, pipeline_name: str):
    """{node_id: {"execution": Execution, "outputs": {key: [Artifact]}}} of the newest run."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return {}
    pipeline_execution_ids = {e.id for e in store.get_executions_by_context(pipeline.id)}
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(e.id in pipeline_execution_ids for e in store.get_executions_by_context(c.id))]
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(run.id)
    nodes = {}
    for execution in executions:
        node_id = None
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + ".") and context.type_id != run.type_id:
                node_id = context.name[len(pipeline_name) + 1:]
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


def _evaluation(uri: str) -> tuple[dict, list]:
    """Overall metrics of the candidate (and change vs baseline), and validation failures."""
    import tensorflow_model_analysis as tfma

    metrics, failures = {}, []
    for slice_metrics in tfma.load_metrics(uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for item in slice_metrics.metric_keys_and_values:
            name = item.key.name + ("_change" if item.key.is_diff else "")
            if item.key.model_name and "baseline" in item.key.model_name and not item.key.is_diff:
                name = "baseline_" + item.key.name
            if item.value.HasField("double_value"):
                metrics[name] = round(item.value.double_value.value, 6)
    try:
        result = tfma.load_validation_result(uri)
        for failure in result.metric_validations_per_slice:
            for f in failure.failures:
                failures.append(f"{f.metric_key.name}: {f.message}")
    except Exception:  # no validation result written (no thresholds)
        pass
    return metrics, failures


def collect_summary(config, progress=None) -> dict:
    store = _store(config.metadata_path)
    nodes = _latest_run_outputs(store, config.pipeline_name)
    summary = {"blessed": False, "pushed_model_dir": None, "metrics": {}, "ingest": None,
               "component_seconds": {}, "component_state": {}, "not_blessed_because": []}
    states = {metadata_store_pb2.Execution.COMPLETE: "complete", metadata_store_pb2.Execution.CACHED: "cached",
              metadata_store_pb2.Execution.FAILED: "failed"}
    for node_id, node in nodes.items():
        execution = node["execution"]
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        summary["component_seconds"][node_id] = round(seconds, 1)
        summary["component_state"][node_id] = states.get(execution.last_known_state, "other")
    if progress is not None:  # measured around each component: more exact than MLMD's timestamps
        summary["component_seconds"].update(progress.seconds)
    examples = nodes.get("ImageExampleGen", nodes.get("ImportExampleGen", {})).get("outputs", {}).get("examples")
    if examples:
        report_path = os.path.join(examples[0].uri, "ingest", "report.json")
        if os.path.exists(report_path):
            with open(report_path, encoding="utf-8") as f:
                report = json.load(f)
            summary["ingest"] = {k: report[k] for k in ("total", "accepted", "quarantined", "skipped",
                                                        "accepted_per_split", "class_names")}
    evaluator = nodes.get("Evaluator", {}).get("outputs", {})
    if evaluator.get("blessing"):
        summary["blessed"] = bool(_prop(evaluator["blessing"][0], "blessed", 0))
    if evaluator.get("evaluation"):
        summary["metrics"], summary["not_blessed_because"] = _evaluation(evaluator["evaluation"][0].uri)
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
    return summary
