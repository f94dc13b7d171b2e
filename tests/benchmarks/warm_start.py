"""`make bench-warm-start`: init_from serving against a cold start, on span 2 of the digits story.

Span 1 (half the sample digits) is trained cold and pushed. Then span 2 (all the digits) is
trained three ways, each judged against span 1's model (none of them replaces it: each is
rolled back if pushed, so all meet the same serving model):
- cold: from scratch, the sample's stages (20 epochs at 0.002), what `init_from: backbone` does;
- warm: `init_from: serving`, the same stages;
- warm, short: `init_from: serving`, a quarter of the epochs at a quarter of the rate (what a
  continuing model needs).
Prints eval accuracy (with the interval of its change against span 1's model), the Trainer's
wall time, and one JSON line. About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import yaml

from tests.benchmarks.retraining_story import GRAFT, REPO, _graft_run, _write_span, span_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.warm_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=f"/tmp/graft-warm-start/{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-m", "pipeline.sample_data"], cwd=REPO, check=True)
    root, sample = args.workdir, os.path.join(REPO, "data", "digits")
    data = os.path.join(root, "data")
    os.makedirs(data)
    base = span_config("graft-warm-start", root, data)
    (stage,) = base["stages"]
    short = {**stage, "epochs": stage["epochs"] // 4, "learning_rate": stage["learning_rate"] / 4}
    runs = [
        ("span 1, cold (then serving)", 1, {}),
        ("span 2, cold", 2, {}),
        ("span 2, warm", None, {"init_from": "serving"}),
        (
            f"span 2, warm, {short['epochs']} epochs at {short['learning_rate']:g}",
            None,
            {"init_from": "serving", "stages": [short]},
        ),
    ]
    rows = []
    for name, span, changes in runs:
        if span:
            _write_span(sample, data, span)
        path = os.path.join(root, f"run-{len(rows) + 1}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({**base, **changes}, f)
        summary = _graft_run(path, path.replace(".yaml", ".json"))
        metrics, change = summary.get("metrics") or {}, (summary.get("promotion") or {}).get("accuracy_change")
        rows.append(
            {
                "run": name,
                "init_from": (summary.get("training_choices") or {}).get("init_from"),
                "accuracy": metrics.get("sparse_categorical_accuracy"),
                "change": change,
                "trainer_seconds": summary["component_seconds"].get("Trainer"),
                "pushed": bool(summary.get("pushed_model_dir")),
            }
        )
        if span != 1 and rows[-1]["pushed"]:  # every span-2 candidate meets span 1's model
            subprocess.run([GRAFT, "rollback", "--serving-dir", base["serving_dir"]], check=True, capture_output=True)
        print(f"{name}: accuracy {rows[-1]['accuracy']:.4f}, Trainer {rows[-1]['trainer_seconds']} s", flush=True)
    print(f"\n{'run':40} {'accuracy':>8} {'change vs span 1 [95% interval]':>34} {'Trainer s':>9}")
    for r in rows:
        c = r["change"]
        interval = f"{c['value']:+.4f} [{c['lower']:+.4f}, {c['upper']:+.4f}]" if c else ""
        print(f"{r['run']:40} {r['accuracy']:8.4f} {interval:>34} {r['trainer_seconds']:9.1f}")
    print(json.dumps({"bench": "warm_start", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
