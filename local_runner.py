"""Runs Graft's pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py --data-dir DIR --backbone mobilenet_v2 --weights imagenet
    graft run ...            (the same)

A thin entry at the top, where the TFX templates keep it: the runner is pipeline/local_dag.py,
the DAG pipeline/pipeline.py, the options pipeline/config.py.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow

from components import files  # noqa: E402
from pipeline import cli  # noqa: E402


def main(argv=None) -> int:
    return cli.main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    files.exit_process(main())
