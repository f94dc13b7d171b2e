"""`make kfp-in-containers`: the sample pipeline compiled for open-source Kubeflow and run task by
task as containers of Graft's image (`graft kfp run-local --engine docker`), every path on a local
S3 server (moto's, standing in for Kubeflow's MinIO): what a cluster's pods would do, with no
checkout mounted; then the same spec with each task as a process of this checkout, side by side.

Needs docker and the image (kubeflow/build_local_image.sh builds it without a registry, about
10 minutes the first time). Prints each task's wall seconds under both engines and the outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

from pipeline import sample_data
from tests.s3_server import local_s3, upload_images

BUCKET = "mlpipeline"
GRAFT = os.path.join(os.path.dirname(sys.executable), "graft")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_local(config_path: str, engine: str, work: str, env: dict) -> dict:
    summary_path = os.path.join(work, f"{engine}.json")
    command = [GRAFT, "kfp", "run-local", "--config", config_path, "--engine", engine, "--summary-json", summary_path]
    print(f"$ {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=REPO, env=env, text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(
            f"run-local --engine {engine} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-3000:]}"
        )
    with open(summary_path, encoding="utf-8") as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="graft:local", help="a local image of kubeflow/Dockerfile")
    parser.add_argument("--per-class", type=int, default=40, help="sample images per class (the sample has ~180)")
    parser.add_argument(
        "--engines",
        default="docker,process",
        help="docker, process (a fresh interpreter per task), fork (run-local's default on Linux), comma-separated",
    )
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="graft-kfp-containers-")
    with local_s3(BUCKET) as (env, client):
        results = _run_both(args, work, env, client)
    _print(results)


def _run_both(args, work: str, env: dict, client) -> dict:
    endpoint = env["S3_ENDPOINT"]
    local = sample_data.write_digits(os.path.join(work, "digits"), per_class=args.per_class)
    with open(os.path.join(REPO, "pipeline", "sample_config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    results = {}
    for engine in args.engines.split(","):
        prefix = f"graft-{engine}"
        config.update(
            data_dir=upload_images(client, BUCKET, local, f"{prefix}/data"),
            pipeline_root=f"s3://{BUCKET}/{prefix}/root",
            serving_dir=f"s3://{BUCKET}/{prefix}/serving",
            metadata_path=os.path.join(work, engine, "metadata.db"),
            class_names=sorted(os.listdir(local)),
            stages=[{"name": "full", "epochs": 10, "trainable": "all", "learning_rate": 0.002}],
            min_accuracy=0.5,
            kubeflow={
                "target": "kfp",
                "image": args.image,
                "s3_endpoint": endpoint,
                "s3_use_https": False,
                "s3_credentials_secret": "mlpipeline-minio-artifact",  # KFP's own; its keys from this shell
            },
        )
        path = os.path.join(work, f"{engine}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        results[engine] = _run_local(path, engine, work, env)
    return results


def _print(results: dict) -> None:
    tasks = sorted({task for summary in results.values() for task in summary["task_seconds"]})
    print(f"\n{'task':<22}" + "".join(f"{engine + ' s':>12}" for engine in results))
    for task in tasks:
        print(
            f"{task:<22}"
            + "".join(f"{summary['task_seconds'].get(task, float('nan')):>12.1f}" for summary in results.values())
        )
    print(f"{'whole run':<22}" + "".join(f"{summary['wall_seconds']:>12.1f}" for summary in results.values()))
    for engine, summary in results.items():
        accuracy = summary["metrics"].get("sparse_categorical_accuracy")
        print(f"{engine}: blessed {summary['blessed']}, pushed {summary['pushed_model_dir']}, accuracy {accuracy}")


if __name__ == "__main__":
    main()
