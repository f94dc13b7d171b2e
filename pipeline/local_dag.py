"""Runs the DAG here: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

`graft run` and local_runner.py both end here; the DAG itself is pipeline/pipeline.py.
"""

from __future__ import annotations

import os

from tfx.dsl.compiler import compiler, constants
from tfx.orchestration import metadata as tfx_metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import runtime_parameter_utils

from components.retrain_gate.component import serving_state
from pipeline.config import GraftConfig
from pipeline.pipeline import create_pipeline
from pipeline.summary import collect_summary


def run_locally(config: GraftConfig, run_id: str, progress=None) -> dict:
    """Runs the pipeline for `config` as run `run_id`; returns that run's summary (a dict)."""
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx_metadata.sqlite_metadata_connection_config(config.metadata_path)
    dag = create_pipeline(config, metadata_connection_config=metadata, serving_state=serving_state(config.serving_dir))
    ir = compiler.Compiler().compile(dag)
    # Our run id, not the runner's timestamp: the summary reads this run's executions by it.
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    LocalDagRunner().run_with_ir(ir)
    return collect_summary(config, run_id, progress)
