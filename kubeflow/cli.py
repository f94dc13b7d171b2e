"""`graft kfp compile | submit | schedule | run-local`: Graft's pipeline on Kubeflow Pipelines v2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

from components.contract import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from kubeflow import cron, fork_server
from pipeline import config as cfg
from pipeline import preflight


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graft kfp",
        description="Compile Graft's pipeline for Kubeflow Pipelines v2 "
        "(PipelineSpec YAML, schema 2.1.0), upload and run it, schedule retraining, or run the "
        "compiled pipeline task by task on this machine first (run-local).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(q):
        q.add_argument(
            "--config", required=True, help="Graft config file; its `kubeflow:` section holds runner settings"
        )
        q.add_argument("--target", choices=["kfp", "vertex"], help="open-source KFP (default) or Vertex AI Pipelines")
        q.add_argument("--image", help="container image built from kubeflow/Dockerfile")
        q.add_argument("--pipeline-root", help="artifact root, e.g. gs://bucket/graft (overrides the config)")
        q.add_argument("--output", help="compiled YAML path (default kubeflow.output: graft_pipeline.yaml)")
        q.add_argument("--dry-run", action="store_true", help="print what would be written or sent; change nothing")

    common(sub.add_parser("compile", help="write the PipelineSpec YAML"))
    for name, text in (
        ("submit", "upload the pipeline (or a new version) and start a run"),
        ("schedule", "upload the pipeline and create a recurring retraining run"),
    ):
        q = sub.add_parser(name, help=text)
        common(q)
        q.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080")
        q.add_argument("--namespace", help="Kubernetes namespace (default kubeflow)")
        q.add_argument("--experiment", help="experiment name (default graft)")
        if name == "schedule":
            q.add_argument(
                "--cron", required=True, help="KFP cron, 6 fields with leading seconds: '0 0 2 * * *' is 02:00 daily"
            )
            q.add_argument("--max-concurrency", type=int, default=1, help="runs allowed at the same time")
            q.add_argument(
                "--catchup", action="store_true", help="run the schedules missed while paused (off by default)"
            )
            q.add_argument(
                "--enable-caching",
                action="store_true",
                help="reuse cached steps (off by default: new data behind an unchanged path must be read)",
            )
        else:
            q.add_argument("--no-cache", action="store_true", help="run every step even if cached")
            _force_flag(q)
    q = sub.add_parser(
        "run-local",
        help="compile as `compile` does, then execute the compiled YAML task by task on this machine, "
        "as the Kubeflow backend would: try your Kubeflow pipeline before you submit it",
    )
    q.add_argument("--config", required=True, help="Graft config file; its `kubeflow:` section holds runner settings")
    q.add_argument(
        "--target",
        choices=["kfp", "vertex"],
        help="hand artifacts over as open-source KFP's driver does (default), or as Vertex AI does",
    )
    q.add_argument("--pipeline-root", help="artifact root (overrides the config)")
    q.add_argument(
        "--engine",
        choices=fork_server.ENGINES,
        default=fork_server.ENGINES[0],
        help="fork (default on Linux): each task a process of this checkout's Python with the image's environment, "
        "forked from one that imported the task's module under that same environment (TFX's ~6 s of imports once "
        "a run, not once a task); process: each task a fresh interpreter (the default elsewhere); "
        "docker: each task a container of the compiled image (--image; kubeflow/build_local_image.sh builds one "
        "without a registry), nothing of this machine mounted, so every path must be on an object store",
    )
    q.add_argument("--image", help="the image the compiled tasks run (with --engine docker: a local image)")
    q.add_argument(
        "--work-dir",
        help="compiled YAML, task logs and output metadata (default <pipeline-root>/kfp-run-local; "
        "beside the metadata database when the pipeline root is on an object store)",
    )
    q.add_argument("--summary-json", help="write the run's facts (blessed, pushed, metrics, task seconds) here")
    q.add_argument(
        "--local-paths",
        action="store_true",
        help="accept local pipeline_root, data and serving paths (no pod could read them: the compiled spec "
        "is for this machine only); without it they are refused as compile and submit refuse them",
    )
    q.add_argument(
        "--no-cache",
        action="store_true",
        help="run every task, as a run submitted with caching off (by default tasks compiled with caching on "
        "reuse an earlier run-local's outputs when KFP's cache key matches, as the cluster would)",
    )
    _force_flag(q)
    return p


CLUSTER_PATHS = ("pipeline_root", "serving_dir", "data_dir", "tfrecord_dir", "text_data", "eval_data")


def _paths(config, which) -> list[str]:
    """`name 'value'` of each of the config's cluster paths that is set and `which(value)`."""
    return [f"{name} {value!r}" for name in CLUSTER_PATHS if (value := getattr(config, name)) and which(value)]


def local_paths(config) -> list[str]:
    """The config's paths a Kubeflow pod cannot see: local ones, where an object store
    (gs://, s3://) is needed."""
    return _paths(config, lambda value: "://" not in value)


def _force_flag(parser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even when the data, config and code equal those the serving model was made from "
        "(by default the tasks after the RetrainGate are skipped then); implies no cache",
    )


def _load(args):
    """The config (class names filled in by the same pre-flight as `graft run`, spans included)
    and its kubeflow settings with the command line's overrides."""
    config = cfg.load_config(
        args.config, {"pipeline_root": args.pipeline_root, "force_retrain": getattr(args, "force", None) or None}
    )
    flags = {
        key: getattr(args, key)
        for key in ("target", "image", "output", "host", "namespace", "experiment")
        if getattr(args, key, None) is not None
    }
    settings = dataclasses.replace(config.kubeflow_settings, **flags)
    settings.validate()
    found = local_paths(config)
    if found and not getattr(args, "local_paths", False):
        raise cfg.ConfigError(
            f"kubeflow.target {settings.target}: {', '.join(found)} "
            + ("is a local path" if len(found) == 1 else "are local paths")
            + ", which no pod of the cluster can read (the backend also rejects a local pipeline root): "
            "use gs:// or s3:// URIs"
            + (" (or --local-paths to run this machine's paths here)" if args.command == "run-local" else "")
        )
    on_s3 = _paths(config, lambda value: value.startswith("s3://"))
    if settings.target == "vertex" and on_s3:
        raise cfg.ConfigError(
            f"kubeflow.target vertex: {', '.join(on_s3)} on S3: Vertex AI Pipelines keeps artifacts on Cloud "
            "Storage and has no way to give its pods S3 credentials (no Kubernetes secrets): use gs:// paths, or "
            "target kfp for a cluster whose store is MinIO or S3"
        )
    if args.command == "run-local" and settings.beam_beyond_the_pod:
        raise cfg.ConfigError(
            f"kubeflow.beam_pipeline_args names --runner={settings.beam_runner}: run-local runs each task's Beam "
            "stages in the task (the DirectRunner); it would start real jobs on that runner from this machine. "
            "Leave the runner out of the config you try here"
        )
    if getattr(args, "engine", "process") == "docker":
        if config.weights and os.path.exists(config.weights):
            found = [*found, f"weights {config.weights!r}"]
        if found:
            raise cfg.ConfigError(
                f"--engine docker: {', '.join(found)} cannot be seen from a container (nothing of this machine is "
                "mounted, as in a pod): put every path on an object store (s3://, minio://), or leave out --engine docker"
            )
    if config.span_window > 1:
        raise cfg.ConfigError(
            f"span_window {config.span_window}: TFX's Kubeflow compiler resolves no span range (its only "
            "resolvers are the latest artifact and the latest blessed model), so a Kubeflow run trains on the "
            "newest span alone: set span_window: 1 here, or run the window with graft run"
        )
    if not config.class_names:
        local = config.data_dir or config.text_data
        if local and "://" not in local:
            preflight.resolve_class_names(config)
        else:
            raise cfg.ConfigError(
                "class_names must be set in the config when the data is not on this machine "
                "(the Evaluator's per-class metrics are compiled into the pipeline)"
            )
    return config, settings


def _trainer_excerpt(compiler, path: str) -> dict:
    spec, platform = compiler.load_compiled(path)
    label = compiler.executor_label(compiler.TRAINER_ID)
    excerpt = {"resources": spec["deploymentSpec"]["executors"][label]["container"].get("resources")}
    if platform:
        excerpt["kubernetes"] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
    return excerpt


def _run_local(config, settings, args) -> int:
    from kubeflow import compiler, run_local  # TFX and TFMA: imported once the checks have passed

    if args.engine == "docker":
        import shutil
        import subprocess

        if not shutil.which("docker"):
            print("error: --engine docker: no docker command on this machine", file=sys.stderr)
            return EXIT_CONFIG
        found = subprocess.run(["docker", "image", "inspect", settings.image], capture_output=True, text=True)
        if found.returncode != 0:
            print(
                f"error: --engine docker: image {settings.image!r} is not on this machine "
                f"({found.stderr.strip()[:200]}); build it: kubeflow/build_local_image.sh {settings.image}",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    root = config.pipeline_root if "://" in config.pipeline_root else os.path.abspath(config.pipeline_root)
    work_dir = os.path.abspath(args.work_dir or os.path.join(config.local_output_dir, "kfp-run-local"))
    os.makedirs(work_dir, exist_ok=True)
    started = time.time()
    spec_path = compiler.compile_pipeline(config, settings, os.path.join(work_dir, "pipeline.yaml"))
    print(f"compiled {spec_path}; running its tasks here as {settings.target} would", flush=True)
    try:
        backend = run_local.run_compiled(
            spec_path, root, work_dir, settings.target, say=_say(started), engine=args.engine
        )
    except (run_local.TaskFailed, run_local.kfp_driver.WorkFolderBusy) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    summary = {
        **run_local.summarize(backend, len(config.class_names)),
        "compiled": spec_path,
        "wall_seconds": round(time.time() - started, 1),
    }
    print(json.dumps({k: v for k, v in summary.items() if k not in ("ingest", "task_logs")}, indent=1))
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, ensure_ascii=False)
    return EXIT_OK


def _say(started: float):
    def say(text: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {text}", flush=True)

    return say


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, settings = _load(args)
        if args.command == "schedule":
            cron.parse(args.cron)
    except (cfg.ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    from kubeflow import client, compiler  # kfp and TFX: imported once the checks have passed

    # Caching is compiled into each task (a run of an uploaded version carries no caching
    # option). Scheduled retraining has it off unless asked: new data behind an unchanged
    # path must not be served from cache.
    if args.command == "schedule":
        config.enable_cache = args.enable_caching
    elif args.command in ("submit", "run-local") and args.no_cache:
        config.enable_cache = False
    if args.command == "run-local":
        return _run_local(config, settings, args)
    output = os.path.abspath(settings.output)
    if args.dry_run:
        output = os.path.join(tempfile.mkdtemp(prefix="graft-kfp-"), os.path.basename(output))
    compiler.compile_pipeline(config, settings, output)
    if args.command == "compile":
        print(
            json.dumps(
                {
                    "would_write" if args.dry_run else "wrote": settings.output if args.dry_run else output,
                    "target": settings.target,
                    "schema_version": "2.1.0",
                    "trainer": _trainer_excerpt(compiler, output),
                },
                indent=1,
            )
        )
        return EXIT_OK
    plan = client.make_plan(
        args.command,
        output,
        settings.pipeline_name or config.pipeline_name,
        settings.host,
        settings.namespace,
        settings.experiment,
        config.pipeline_root,
        enable_caching=config.enable_cache,
        cron_expression=getattr(args, "cron", None),
        max_concurrency=getattr(args, "max_concurrency", 1),
        catchup=getattr(args, "catchup", False),
    )
    if args.dry_run:
        print(json.dumps({"dry_run": True, "would_send": plan.describe()}, indent=1))
        return EXIT_OK
    if not settings.host:
        print("error: --host (or kubeflow.host in the config) is required to reach the KFP server", file=sys.stderr)
        return EXIT_CONFIG
    result = client.execute(plan)
    print(json.dumps({"sent": plan.describe(), "created": result}, indent=1))
    return EXIT_OK
