"""Runs Graft's pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py --data-dir DIR --backbone mobilenet_v2 --weights imagenet
    graft run ...            (the same)

This module only chooses the runner and its settings; the DAG is pipeline/pipeline.py.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow

from pipeline import cli  # noqa: E402


def run_locally(config, progress=None):
    """Runs the pipeline for `config`; returns the run summary (a dict)."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline
    from pipeline.summary import collect_summary

    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    graft_pipeline = create_pipeline(config, metadata_connection_config=metadata)
    tfx.orchestration.LocalDagRunner().run(graft_pipeline)
    return collect_summary(config, progress)


def main(argv=None) -> int:
    return cli.run_command(argv if argv is not None else sys.argv[1:], run_locally)


if __name__ == "__main__":
    sys.exit(main())
