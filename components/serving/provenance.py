"""What made a pushed version: written into it (`<version>/provenance.json`, beside the
SavedModel; TF Serving ignores it) and onto the Pusher's ML Metadata artifact, so that "what
serves, and why" has an answer months later. `graft history` reads it back.

The record: the data (span, input fingerprint, ingest counts), the whole resolved config, the
code version, the metrics that blessed the model, the version it replaced, the pipeline run and
the time.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess

from components.contract import DATA_LISTING_PROPERTY, PROVENANCE_FILE
from components.serving import serving_dir as serving_versions

INGEST_COUNTS = ("total", "accepted", "quarantined", "skipped", "truncated")
BLESSING_METRICS = ("sparse_categorical_accuracy", "baseline_sparse_categorical_accuracy", "macro_f1_score")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Graft's package version, and the git commit when run from a checkout ('+edited' when the
    checkout differs from it): taken where the pipeline is compiled, so a Kubeflow run records
    the code its spec was compiled from."""
    from importlib import metadata

    try:
        version = f"graft {metadata.version('graft')}"
    except metadata.PackageNotFoundError:
        version = "graft (not installed)"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(os.path.join(repo, ".git")):
        return version
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        edited = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return version
    if commit.returncode != 0:
        return version
    return f"{version} at {commit.stdout.strip()}{'+edited' if edited.stdout.strip() else ''}"


def _property(artifact, name: str):
    """A custom property's value, or None. Through TFX's Kubeflow entrypoint every property that
    travelled as artifact metadata arrives as a struct value (a count as 120.0): decoded here."""
    if not artifact.has_custom_property(name):
        return None
    if artifact.mlmd_artifact.custom_properties[name].HasField("struct_value"):
        value = artifact.get_json_value_custom_property(name)  # get_custom_property reads 0.0 as None
    else:
        value = artifact.get_custom_property(name)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _span(examples):
    span = _property(examples, "span")
    if span is None and examples.has_property("span"):
        span = examples.span
    return span


def _by_span(artifact) -> tuple:
    return (_span(artifact) or 0, artifact.id or 0)


def newest(examples: list):
    """The newest span's artifact of a span window (this run's ExampleGen output)."""
    return max(examples, key=_by_span)


def data_record(examples, window: list | None = None) -> dict:
    """The examples artifact's span, input fingerprint and ingest counts (ExampleGen's properties).
    `window`: every examples artifact the model was trained on (span_window), oldest first."""
    span = _span(examples)
    return {
        **(
            {"window": [{"span": _span(a), "examples_uri": a.uri} for a in sorted(window, key=_by_span)]}
            if window
            else {}
        ),
        "examples_uri": examples.uri,
        "span": span,
        "input_fingerprint": _property(examples, "input_fingerprint"),
        "data_listing": _property(examples, DATA_LISTING_PROPERTY),  # images: which file is in which class
        "ingest": {key: _property(examples, f"ingest_{key}") for key in INGEST_COUNTS},
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def dumps(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True, default=str)


def build(
    *,
    examples,
    evaluation: dict,
    config: dict,
    code: str,
    run_id: str | None,
    replaced: str | None,
    model_uri: str,
    training_key: dict | None = None,
    golden: dict | None = None,
    window: list | None = None,
) -> dict:
    """The provenance record of a version about to be published. `training_key`: the
    RetrainGate's (data, model config, model code), which the next run compares with its own.
    `golden`: the evaluation on the golden set (eval_data), when there is one."""
    overall = evaluation.get("overall", {})
    golden_overall = (golden or {}).get("overall", {})
    return {
        "pushed_at": _now(),
        "reason": "blessed by the Evaluator",
        "pipeline_run_id": run_id,
        "model_uri": model_uri,
        "replaced_version": os.path.basename(replaced.rstrip("/")) if replaced else None,
        "data": data_record(examples, window) if examples is not None else None,
        "metrics": {name: overall[name] for name in BLESSING_METRICS if overall.get(name) is not None},
        **({"metrics_error": evaluation["error"]} if "error" in evaluation else {}),
        "metric_intervals": evaluation.get("intervals", {}),  # TFMA's 95 % intervals of those metrics
        "promotion": evaluation.get("promotion"),  # the rule that let it through, on the change's interval
        "per_class_metrics": evaluation.get("per_class", {}),
        "golden": {
            "metrics": {
                name: golden_overall[name] for name in BLESSING_METRICS if golden_overall.get(name) is not None
            },
            "metric_intervals": golden.get("intervals", {}),
            "promotion": golden.get("promotion"),
        }
        if golden
        else None,
        "config": redacted(config),
        "code_version": code,
        "training_key": training_key,
    }


def rollback_files(restored_dir: str, to_version: int, replaced: str | None) -> dict:
    """The provenance of the copy `graft rollback` makes: the restored version's own record (its
    data, config, code and metrics), with why and when the copy was made (serving_dir.rollback)."""
    record = {
        **(read(restored_dir) or {}),
        "pushed_at": _now(),
        "reason": f"rolled back to version {to_version}",
        "rolled_back_to": to_version,
        "replaced_version": os.path.basename(replaced.rstrip("/")) if replaced else None,
        "pipeline_run_id": None,
    }
    return {PROVENANCE_FILE: dumps(record)}


def history(serving_dir: str) -> list[dict]:
    """Every version in `serving_dir`, oldest first, with its record's headline (the newest serves)."""
    found = serving_versions.versions(serving_dir)
    rows = []
    for version in found:
        record = read(os.path.join(serving_dir, str(version))) or {}
        data = record.get("data") or {}
        rows.append(
            {
                "version": version,
                "serving": version == found[-1],
                "pushed_at": record.get("pushed_at"),
                "reason": record.get("reason", "no provenance recorded"),
                "accuracy": (record.get("metrics") or {}).get("sparse_categorical_accuracy"),
                "serving_accuracy_then": (record.get("metrics") or {}).get("baseline_sparse_categorical_accuracy"),
                "golden_accuracy": ((record.get("golden") or {}).get("metrics") or {}).get(
                    "sparse_categorical_accuracy"
                ),
                "replaced_version": record.get("replaced_version"),
                "span": data.get("span"),
                "examples_accepted": (data.get("ingest") or {}).get("accepted"),
                "pipeline_run_id": record.get("pipeline_run_id"),
                "code_version": record.get("code_version"),
            }
        )
    return rows


def read(version_dir: str) -> dict | None:
    """A version's provenance record, or None for a version pushed without one. A record that
    cannot be read says so ({"reason": ...}) rather than stopping a rollback or `graft history`."""
    from components import files

    path = os.path.join(version_dir, PROVENANCE_FILE)
    if not files.exists(path):
        return None
    try:
        record = json.loads(files.read(path))
    except ValueError as err:
        return {"reason": f"provenance unreadable ({path}: {err})"}
    return record if isinstance(record, dict) else {"reason": f"provenance unreadable ({path}: not an object)"}


SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def redacted(config: dict) -> dict:
    """`config` with the values of secret-looking Beam flags (--s3_secret_access_key=...,
    --aws_session_token ...) replaced: a serving directory is read more widely than the pipeline's
    own store."""

    def clean(args):
        if not isinstance(args, list):
            return args
        out, hide_next = [], False
        for arg in args:
            text = str(arg)
            flag = text.split("=", 1)[0].lower()
            secret = text.startswith("--") and any(word in flag for word in SECRET_WORDS)
            if hide_next:
                out.append("<redacted>")
            elif secret and "=" in text:
                out.append(f"{text.split('=', 1)[0]}=<redacted>")
            else:
                out.append(arg)
            hide_next = secret and "=" not in text
        return out

    result = dict(config)
    result["beam_pipeline_args"] = clean(config.get("beam_pipeline_args"))
    if isinstance(config.get("kubeflow"), dict):
        result["kubeflow"] = {
            **config["kubeflow"],
            "beam_pipeline_args": clean(config["kubeflow"].get("beam_pipeline_args")),
        }
        if result["kubeflow"]["beam_pipeline_args"] is None:
            result["kubeflow"].pop("beam_pipeline_args")
    return result
