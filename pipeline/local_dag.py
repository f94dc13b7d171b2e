"""Runs the DAG here: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

`graft run` and local_runner.py both end here; the DAG itself is pipeline/pipeline.py.
"""

from __future__ import annotations

import os

from tfx.dsl.compiler import compiler, constants
from tfx.orchestration import metadata as tfx_metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import runtime_parameter_utils

from components import files
from components.example_gen import image_ingest
from components.retrain_gate.component import serving_state
from pipeline.config import GraftConfig
from pipeline.pipeline import create_pipeline, training_example_gen_id
from pipeline.summary import collect_summary


def run_locally(config: GraftConfig, run_id: str, progress=None) -> dict:
    """Runs the pipeline for `config` as run `run_id`; returns that run's summary (a dict)."""
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx_metadata.sqlite_metadata_connection_config(config.metadata_path)
    window = []
    if config.span_window > 1:
        store = _store(config)
        _span_properties_from_custom(store, config.pipeline_name)
        window = training_window(config, store)
    if window:
        print(f"span window: spans {', '.join(map(str, window))} (span_window {config.span_window})", flush=True)
    dag = create_pipeline(
        config,
        metadata_connection_config=metadata,
        serving_state=serving_state(config.serving_dir),
        window_spans=window,
    )
    ir = compiler.Compiler().compile(dag)
    # Our run id, not the runner's timestamp: the summary reads this run's executions by it.
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    LocalDagRunner().run_with_ir(ir)
    return collect_summary(config, run_id, progress)


def training_window(config: GraftConfig, store=None) -> list[int]:
    """The spans a span_window run trains on: this run's (the newest span-<N>/ folder) and, before
    it, the newest spans that a Trainer of this pipeline has trained on (so each passed the
    ExampleValidator and the drift gate when it came; a blocked, invalid or interrupted span is
    left out) and whose folder is still there; span_window of them at most."""
    newest = image_ingest.newest_span(config.data_path)
    if not newest:
        return []
    current = int(newest[len(image_ingest.SPAN_PREFIX) :])
    present = {
        int(name[len(image_ingest.SPAN_PREFIX) :])
        for name in files.listdir(config.data_path)
        if name.startswith(image_ingest.SPAN_PREFIX) and name[len(image_ingest.SPAN_PREFIX) :].isdigit()
    }
    trained = _trained_spans(store or _store(config), config.pipeline_name, training_example_gen_id(config))
    earlier = sorted(span for span in trained & present if span < current)
    return [*earlier[len(earlier) - (config.span_window - 1) :], current] if config.span_window > 1 else [current]


def _store(config: GraftConfig):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    return metadata_store.MetadataStore(connection)


def _span_properties_from_custom(store, pipeline_name: str) -> None:
    """Examples ingested before Graft set the span and version properties (TFX's driver writes
    custom properties only; its span resolvers read the properties): copied over, so that an
    older span is not read as span 0."""
    context = store.get_context_by_type_and_name(constants.PIPELINE_CONTEXT_TYPE_NAME, pipeline_name)
    if context is None:
        return
    updated = []
    for artifact in store.get_artifacts_by_context(context.id):
        if artifact.type == "Examples" and "span" not in artifact.properties and "span" in artifact.custom_properties:
            artifact.properties["span"].int_value = artifact.custom_properties["span"].int_value
            artifact.properties["version"].int_value = artifact.custom_properties["version"].int_value
            updated.append(artifact)
    if updated:
        store.put_artifacts(updated)


def _trained_spans(store, pipeline_name: str, example_gen_id: str) -> set:
    """The spans whose latest ingest (TFX's rule: highest version, then newest) a completed (or
    cached) Trainer execution of this pipeline read: a span ingested again since, and not
    trained on, is not among them."""
    from ml_metadata.proto import metadata_store_pb2

    trainer = store.get_context_by_type_and_name(constants.NODE_CONTEXT_TYPE_NAME, f"{pipeline_name}.Trainer")
    ingest = store.get_context_by_type_and_name(constants.NODE_CONTEXT_TYPE_NAME, f"{pipeline_name}.{example_gen_id}")
    if trainer is None or ingest is None:
        return set()
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    trainers = [e.id for e in store.get_executions_by_context(trainer.id) if e.last_known_state in done]
    read = {
        event.artifact_id
        for event in (store.get_events_by_execution_ids(trainers) if trainers else [])
        if event.type == metadata_store_pb2.Event.INPUT
    }
    latest = {}
    for artifact in store.get_artifacts_by_context(ingest.id):
        if artifact.type != "Examples" or "span" not in artifact.custom_properties:
            continue
        span = artifact.custom_properties["span"].int_value
        key = (artifact.custom_properties["version"].int_value, artifact.create_time_since_epoch, artifact.id)
        if span not in latest or key > latest[span][0]:
            latest[span] = (key, artifact.id)
    return {span for span, (_, artifact_id) in latest.items() if artifact_id in read}
