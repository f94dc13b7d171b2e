"""Runs the DAG here: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

`graft run` and local_runner.py both end here; the DAG itself is pipeline/pipeline.py.
"""

from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import GraftConfig
from pipeline.pipeline import create_pipeline
from pipeline.summary import collect_summary


def run_locally(config: GraftConfig, progress=None) -> dict:
    """Runs the pipeline for `config`; returns the run summary (a dict)."""
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    graft_pipeline = create_pipeline(config, metadata_connection_config=metadata)
    tfx.orchestration.LocalDagRunner().run(graft_pipeline)
    return collect_summary(config, progress)
