"""`make story`: scheduled retraining on the bundled digits as spans, with `graft run` and with
`graft kfp run-local`, as a team would live it.

Spans arrive one by one under DATA/span-<N>/ (TFX's {SPAN} pattern; each run trains on the newest):
1. span 1, half the digits: nothing serves yet, so it is judged on min_accuracy and pushed;
2. span 2, all the digits (more data): judged against span 1's model on the 95 % interval of the
   accuracy change (promote_when: better): pushed or refused, with the interval;
3. the same again, nothing new: stopped after the RetrainGate, no Trainer run (wall time vs a
   full run);
4. span 3, all the digits plus every training '3' copied twice into class '8' (a labelling
   error): the candidate's recall of '3' collapses and max_class_recall_drop refuses it, naming
   the class;
then `graft history` on the serving directory. A golden set (every tenth sample image, eval_data)
is scored beside each span's eval split; its images are dropped from the spans' training data. Prints a table per runner and one JSON line.
About 12 minutes with `graft run`, 20 with run-local, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRAFT = os.path.join(os.path.dirname(sys.executable), "graft")
COLLAPSED, INTO = "3", "8"


def _write_span(sample: str, data: str, span: int) -> None:
    target = os.path.join(data, f"span-{span}")
    for label in sorted(os.listdir(sample)):
        names = sorted(os.listdir(os.path.join(sample, label)))
        if span == 1:
            names = names[::2]
        os.makedirs(os.path.join(target, label))
        for name in names:
            shutil.copy(os.path.join(sample, label, name), os.path.join(target, label, name))
    if span == 3:  # a labelling error: each '3' also filed twice as an '8'
        from PIL import Image

        for name in sorted(os.listdir(os.path.join(sample, COLLAPSED))):
            pixels = Image.open(os.path.join(sample, COLLAPSED, name))
            for level, copy in ((1, "a"), (9, "b")):  # the same pixels in other bytes (ingest drops byte copies)
                pixels.save(os.path.join(target, INTO, f"{COLLAPSED}{copy}_{name}"), compress_level=level)


def span_config(name: str, root: str, data: str) -> dict:
    """The sample's config, reading spans from `data`, its pipeline, metadata and serving
    directory under `root`."""
    with open(os.path.join(REPO, "pipeline", "sample_config.yaml")) as f:
        config = yaml.safe_load(f)
    config.update(
        pipeline_name=name,
        data_dir=data,
        spans=True,
        pipeline_root=os.path.join(root, "pipeline"),
        metadata_path=os.path.join(root, "metadata.db"),
        serving_dir=os.path.join(root, "serving"),
    )
    return config


def _write_golden(sample: str, golden: str) -> None:
    """Every tenth image of each class: the fixed set every candidate and the serving model are
    scored on (eval_data); the spans' copies of these images are dropped from training."""
    for label in sorted(os.listdir(sample)):
        os.makedirs(os.path.join(golden, label))
        for name in sorted(os.listdir(os.path.join(sample, label)))[::10]:
            shutil.copy(os.path.join(sample, label, name), os.path.join(golden, label, name))


def _graft_run(config_path: str, summary_path: str) -> dict:
    command = [sys.executable, os.path.join(REPO, "local_runner.py"), "--config", config_path]
    result = subprocess.run([*command, "--summary-json", summary_path], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"graft run failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    with open(summary_path) as f:
        summary = json.load(f)
    summary["trainer_ran"] = "Trainer" in summary.get("component_seconds", {})
    return summary


def _kfp_run_local(config_path: str, summary_path: str) -> dict:
    command = [GRAFT, "kfp", "run-local", "--config", config_path, "--local-paths", "--summary-json", summary_path]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"graft kfp run-local failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    with open(summary_path) as f:
        summary = json.load(f)
    summary["trainer_ran"] = "Trainer" in summary.get("task_seconds", {})
    summary["pushed_model_dir"] = summary.get("pushed_model_dir") if summary.get("pushed") else None
    return summary


def _row(step: str, summary: dict, seconds: float) -> dict:
    metrics = summary.get("metrics") or {}
    change = (summary.get("promotion") or {}).get("accuracy_change")
    if summary.get("run_skipped_reason"):
        decision = "skipped"
    else:
        decision = "pushed" if summary.get("pushed_model_dir") else "refused"
    return {
        "step": step,
        "decision": decision,
        "trainer_ran": summary["trainer_ran"],
        "accuracy": metrics.get("sparse_categorical_accuracy"),
        "serving_accuracy": metrics.get("baseline_sparse_categorical_accuracy"),
        "change_interval": change,
        "golden_accuracy": ((summary.get("golden") or {}).get("metrics") or {}).get("sparse_categorical_accuracy"),
        "why": summary.get("run_skipped_reason") or summary.get("not_blessed_because") or [],
        "seconds": round(seconds, 1),
    }


def story(runner: str, workdir: str) -> dict:
    root = os.path.join(workdir, runner)
    data = os.path.join(root, "data")
    os.makedirs(data)
    sample = os.path.join(REPO, "data", "digits")
    config = span_config(f"graft-story-{runner}", root, data)
    config.update(max_class_recall_drop=0.25, eval_data=os.path.join(root, "golden"))
    _write_golden(sample, config["eval_data"])
    if runner == "kfp":
        config["kubeflow"] = {"target": "kfp"}
    config_path = os.path.join(root, "config.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    run = _graft_run if runner == "local" else _kfp_run_local
    rows = []
    for step, new_span in (
        ("span 1 (half the digits)", 1),
        ("span 2 (all the digits)", 2),
        ("span 2 again", None),
        ("span 3 ('3's also filed as '8's)", 3),
    ):
        if new_span:
            _write_span(sample, data, new_span)
        started = time.time()
        summary = run(config_path, os.path.join(root, f"summary-{len(rows) + 1}.json"))
        rows.append(_row(step, summary, time.time() - started))
        print(f"[{runner}] {step}: {rows[-1]['decision']} in {rows[-1]['seconds']} s", flush=True)
    history = subprocess.run(
        [GRAFT, "history", "--serving-dir", config["serving_dir"]], capture_output=True, text=True, check=True
    ).stdout
    return {"runner": runner, "rows": rows, "history": history}


def _print(result: dict) -> None:
    print(f"\n== {result['runner']}")
    print(
        f"{'step':34} {'decision':8} {'Trainer':7} {'accuracy':>8} {'serving':>8} {'change [95% interval]':>28} {'golden':>7} {'wall s':>7}"
    )
    for r in result["rows"]:
        change = r["change_interval"]
        interval = f"{change['value']:+.4f} [{change['lower']:+.4f}, {change['upper']:+.4f}]" if change else ""
        accuracy = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else ""
        serving = f"{r['serving_accuracy']:.4f}" if r["serving_accuracy"] is not None else ""
        golden = f"{r['golden_accuracy']:.4f}" if r["golden_accuracy"] is not None else ""
        print(
            f"{r['step']:34} {r['decision']:8} {'ran' if r['trainer_ran'] else 'no':7} {accuracy:>8} {serving:>8} {interval:>28} "
            f"{golden:>7} {r['seconds']:7.1f}"
        )
        for why in [r["why"]] if isinstance(r["why"], str) else r["why"]:
            print(f"{'':34}   {why}")
    print("graft history:\n" + result["history"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.retraining_story", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runners", default="local,kfp", help="local (graft run), kfp (graft kfp run-local), or both")
    parser.add_argument("--workdir", default=f"/tmp/graft-story/{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-m", "pipeline.sample_data"], cwd=REPO, check=True)
    results = [story(runner, args.workdir) for runner in args.runners.split(",")]
    for result in results:
        _print(result)
    print(json.dumps({"bench": "retraining_story", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
