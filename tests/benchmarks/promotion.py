"""`make bench-promotion`: does noise flip the serving model? Retrains of the bundled sample on
identical data, each with another seed, judged against a serving model trained the same way.

One serving model (seed 0) is trained and pushed; then each of `--seeds` candidates is trained
with `graft run --force` (same data, same config, only the seed differs) and judged by the
Evaluator against it. Every candidate's evaluation holds TFMA's 95 % interval of its accuracy
change against the serving model, so the decision of every rule is read off the same candidates,
side by side: `point` (the point estimate against max_accuracy_drop: Graft before the intervals),
`not_worse` and `better` (the default). A candidate the default pushed is rolled back, so every
candidate meets the same serving model. Last, a candidate trained with a short budget (a few
epochs: worse by some points) shows what each rule does with a model that is really worse.

Prints one row per candidate and the counts, and one JSON line. About 2 minutes per run on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = ("point", "not_worse", "better")


def _run(config: dict, workdir: str, name: str, force: bool) -> dict:
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    summary_path = os.path.join(workdir, f"{name}.json")
    command = [sys.executable, os.path.join(REPO, "local_runner.py"), "--config", path, "--summary-json", summary_path]
    started = time.time()
    result = subprocess.run(command + (["--force"] if force else []), cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    with open(summary_path) as f:
        summary = json.load(f)
    summary["bench_seconds"] = round(time.time() - started, 1)
    return summary


def _decisions(summary: dict, max_accuracy_drop: float) -> dict:
    """Each rule's verdict on one candidate: `point` on the point estimate (TFMA's threshold), the
    others on the recorded interval."""
    from components.evaluator import promotion

    change = (summary.get("promotion") or {}).get("accuracy_change")
    point_ok = change is not None and change["value"] >= -max_accuracy_drop - 1e-10
    return {"point": point_ok, **{rule: promotion.judge(rule, max_accuracy_drop, change)[0] for rule in RULES[1:]}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.promotion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="retrains on identical data (default 10)")
    parser.add_argument("--short-epochs", type=int, default=4, help="digits: the worse candidate's epochs (sample: 20)")
    parser.add_argument(
        "--sample",
        choices=("digits", "text"),
        default="digits",
        help="digits: the image sample (MobileNetV2 from scratch, whose accuracy moves 0.84-0.96 from seed to "
        "seed); text: the review sentences (TF-IDF + logistic regression, where seeds change little, so a "
        "difference between two retrains is the eval set's noise); its worse candidate's TF-IDF keeps the 100 most frequent words and pairs",
    )
    parser.add_argument("--workdir", default=f"/tmp/graft-bench-promotion/{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    text = args.sample == "text"
    subprocess.run(
        [sys.executable, "-m", "pipeline.sample_text_data" if text else "pipeline.sample_data"], cwd=REPO, check=True
    )
    with open(os.path.join(REPO, "pipeline", "sample_text_config.yaml" if text else "sample_config.yaml")) as f:
        base = yaml.safe_load(f)
    data_key = "text_data" if text else "data_dir"
    base.update(
        {data_key: os.path.join(REPO, base[data_key])},
        pipeline_root=os.path.join(args.workdir, "root"),
        metadata_path=os.path.join(args.workdir, "metadata.db"),
        serving_dir=os.path.join(args.workdir, "serving"),
        keep_versions=100,  # each push is rolled back: the serving model's version must not be pruned
    )
    drop = float(base.get("max_accuracy_drop", 0.0))
    serving = _run({**base, "seed": 0}, args.workdir, "serving", force=False)
    if not serving.get("pushed_model_dir"):
        raise SystemExit(f"the serving model was not pushed: {serving.get('not_blessed_because')}")
    version = int(os.path.basename(serving["pushed_model_dir"]))
    print(
        f"{args.sample} sample; serving model (seed 0): accuracy {serving['metrics']['sparse_categorical_accuracy']:.4f}, version {version}"
    )
    print(
        f"{'candidate':>18} {'accuracy':>8} {'change':>8} {'95% interval':>20}  " + " ".join(f"{r:>9}" for r in RULES)
    )
    rows = []
    candidates = [(f"seed {s}", {**base, "seed": s}) for s in range(1, args.seeds + 1)]
    if text:
        candidates.append(("100-term vocabulary", {**base, "seed": 1, "vocab_size": 100}))
    else:
        short = [{**stage, "epochs": args.short_epochs} for stage in base["stages"]]
        candidates.append((f"{args.short_epochs} epochs", {**base, "seed": 1, "stages": short}))
    for name, config in candidates:
        summary = _run(config, args.workdir, name.replace(" ", "-"), force=True)
        change = (summary.get("promotion") or {}).get("accuracy_change") or {}
        decisions = _decisions(summary, drop)
        rows.append(
            {
                "candidate": name,
                "accuracy": summary["metrics"].get("sparse_categorical_accuracy"),
                "change": change,
                "promoted": decisions,
                "pushed": bool(summary.get("pushed_model_dir")),
                "seconds": summary["bench_seconds"],
            }
        )
        interval = f"[{change['lower']:+.4f}, {change['upper']:+.4f}]" if change else "none"
        print(
            f"{name:>18} {rows[-1]['accuracy']:8.4f} {change.get('value', float('nan')):+8.4f} {interval:>20}  "
            + " ".join(f"{'PROMOTED' if decisions[r] else 'refused':>9}" for r in RULES),
            flush=True,
        )
        if summary.get("pushed_model_dir"):  # the next candidate meets the same serving model
            subprocess.run(
                [
                    os.path.join(os.path.dirname(sys.executable), "graft"),
                    "rollback",
                    "--serving-dir",
                    base["serving_dir"],
                    "--to",
                    str(version),  # the seed-0 model's own version, kept (keep_versions)
                ],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
    retrains = rows[: args.seeds]
    counts = {rule: sum(r["promoted"][rule] for r in retrains) for rule in RULES}
    print(f"\nOf {args.seeds} retrains on identical data, promoted: " + ", ".join(f"{r} {counts[r]}" for r in RULES))
    worse = rows[-1]
    print(
        f"The {worse['candidate']} candidate (change {worse['change'].get('value', float('nan')):+.4f}): "
        + ", ".join(f"{r} {'PROMOTED' if worse['promoted'][r] else 'refused'}" for r in RULES)
    )
    print(
        json.dumps(
            {
                "bench": "promotion",
                "sample": args.sample,
                "serving_accuracy": serving["metrics"].get("sparse_categorical_accuracy"),
                "promoted_of_retrains": counts,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
