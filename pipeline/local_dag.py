"""Runs the DAG here: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

`graft run` and local_runner.py both end here; the DAG itself is pipeline/pipeline.py.
"""

from __future__ import annotations

import json
import os

from tfx.dsl.compiler import compiler, constants
from tfx.orchestration import metadata as tfx_metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import runtime_parameter_utils

from components.example_gen import image_ingest
from components.retrain_gate.component import (
    DRIFT_PROPERTY,
    RETRAIN_PROPERTY,
    TRAINING_KEY_PROPERTY,
    RetrainDecision,
    serving_state,
)
from pipeline.config import GraftConfig
from pipeline.pipeline import create_pipeline
from pipeline.summary import collect_summary


def run_locally(config: GraftConfig, run_id: str, progress=None) -> dict:
    """Runs the pipeline for `config` as run `run_id`; returns that run's summary (a dict)."""
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx_metadata.sqlite_metadata_connection_config(config.metadata_path)
    excluded = drift_blocked_spans(config) if config.span_window > 1 else []
    dag = create_pipeline(
        config,
        metadata_connection_config=metadata,
        serving_state=serving_state(config.serving_dir),
        excluded_spans=excluded,
    )
    ir = compiler.Compiler().compile(dag)
    # Our run id, not the runner's timestamp: the summary reads this run's executions by it.
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    LocalDagRunner().run_with_ir(ir)
    return collect_summary(config, run_id, progress)


def drift_blocked_spans(config: GraftConfig) -> list[int]:
    """The spans an earlier run's drift gate blocked (their newest decision: a block, nothing
    trained), which a span window leaves out; this run's own span is judged by this run's gate."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.exists(config.metadata_path):
        return []
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    store = metadata_store.MetadataStore(connection)
    context = store.get_context_by_type_and_name(constants.PIPELINE_CONTEXT_TYPE_NAME, config.pipeline_name)
    if context is None:
        return []
    newest = image_ingest.newest_span(config.data_path)
    current = int(newest[len(image_ingest.SPAN_PREFIX) :]) if newest else None
    blocked = {}
    for artifact in sorted(store.get_artifacts_by_context(context.id), key=lambda a: a.id):
        if artifact.type != RetrainDecision.TYPE_NAME:
            continue
        properties = artifact.custom_properties
        span = json.loads(properties[TRAINING_KEY_PROPERTY].string_value or "{}").get("span")
        report = json.loads(properties[DRIFT_PROPERTY].string_value or "null")
        blocked[span] = bool(report and report.get("blocked")) and not properties[RETRAIN_PROPERTY].int_value
    return sorted(span for span, was in blocked.items() if was and span is not None and span != current)
