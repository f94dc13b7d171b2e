"""The `graft` command: `graft run` (= python local_runner.py), `graft backbones`.

Flags build one GraftConfig (flags override --config); every configuration problem is
reported before TFX starts, with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import secrets
import sys
import time
import traceback
import warnings

from tqdm import tqdm

from components import files, locks
from components.backbones import registry
from components.contract import EXIT_BUSY, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, PUBLISH_LOCK_FILE, RUN_LOCK_FILE
from components.serving import provenance, serving_dir
from components.trainer.settings import INIT_FROM
from components.trainer.stages import AUTO, PRESETS
from components.tuner import search_space
from pipeline import config as cfg
from pipeline import preflight
from pipeline import progress as progress_view
from pipeline.report import describe_devices, write_report


def _run_parser(prog: str = "graft run") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a classifier on your images or texts by grafting a new head onto a pretrained "
        "backbone, evaluate it, and push it to a serving directory if it is good enough. "
        "Runs Graft's TFX pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite ML "
        "Metadata). Re-running with unchanged inputs executes nothing and pushes nothing.",
    )
    p.add_argument("--config", help="YAML/JSON file with any option below (underscores or dashes); flags override it")
    data = p.add_argument_group("data (one of)")
    data.add_argument(
        "--data-dir", help="image folders: DIR/<class>/<image>, or DIR/train/<class>/... and DIR/eval/<class>/..."
    )
    data.add_argument(
        "--tfrecord-dir", help="TFRecord files of tf.Example with 'image' (encoded bytes) and 'label' (int)"
    )
    data.add_argument(
        "--text-data",
        help="texts: a CSV/TSV/JSON Lines table (text_column, label_column in --config), a folder of them, "
        "or DIR/<class>/<file>.txt; the backbone: text_tfidf (default), text_scratch, hub_text or hub_bert",
    )
    p.add_argument_group("golden set").add_argument(
        "--eval-data",
        help="a fixed labelled set (image class folders, or a text table like --text-data), outside the data "
        "folder, on which every candidate and the serving model are also scored: a push needs its blessing "
        "too; anything also in the training data is dropped from training and reported",
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--backbone",
        help="registry name, see `graft backbones` (default: mobilenet_v2 for images, text_tfidf for text)",
    )
    model.add_argument(
        "--weights",
        help="imagenet | none | path to a Keras weights file (default imagenet; none for text_tfidf and "
        "text_scratch); for hub, hub_text and hub_bert: a TF Hub handle (URL or local SavedModel directory)",
    )
    model.add_argument(
        "--text-preprocessor",
        help="hub_bert: the encoder's TF Hub preprocessing model (URL or local SavedModel directory), "
        "e.g. https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3; it runs in Transform",
    )
    model.add_argument("--image-size", type=int, help="input size in pixels (default: the backbone's)")
    train = p.add_argument_group("training")
    train.add_argument(
        "--stages",
        help=f"preset: {' | '.join(PRESETS)} (default: two_stage with pretrained weights, scratch with "
        "--weights none, frozen for text_tfidf); lists go in --config",
    )
    train.add_argument(
        "--epochs",
        type=int,
        help="head epochs of the presets (default 5; more on small data: min_head_steps, 300 or 3,000 for the frozen preset)",
    )
    train.add_argument(
        "--fine-tune-epochs",
        type=int,
        help="fine-tuning epochs of two_stage (default 10; more on small data: min_fine_tune_steps 100)",
    )
    train.add_argument(
        "--init-from",
        choices=INIT_FROM,
        help="backbone (default): train from the backbone's weights; serving: fine-tune the model now serving "
        "(same classes) on this data, a cold start when nothing serves yet",
    )
    train.add_argument("--batch-size", type=int, help="default 32")
    train.add_argument(
        "--learning-rate",
        type=float,
        help="head learning rate (default: found by a range test on the training data, printed; fine-tuning "
        "10x lower, hub_bert 3e-5)",
    )
    train.add_argument(
        "--tuner-trials",
        type=int,
        help="run TFX's Tuner first: N trials of head rate, fine-tuning rate and depth, budget, scored on a "
        "validation part; the Trainer trains with the best (default 0: no Tuner)",
    )
    ev = p.add_argument_group("promotion")
    ev.add_argument(
        "--on-drift",
        choices=["block", "warn", "off"],
        help="when a new span is not like the data the serving model was trained on (label shares, image "
        "properties, text length and vocabulary, the model's features): block (default: nothing trained, the "
        "checks that fired said), warn (train, record the checks), off (no checks); thresholds: the drift: section",
    )
    ev.add_argument(
        "--promote-when",
        choices=["better", "not_worse", "point"],
        help="against the model now serving, on the 95%% confidence interval of the accuracy change: better "
        "(default: its lower bound above 0), not_worse (refused when its upper bound is below -max-accuracy-drop), "
        "point (the point estimate alone)",
    )
    ev.add_argument("--min-accuracy", type=float, help="eval accuracy needed to be blessed (default 0.5)")
    ev.add_argument("--max-accuracy-drop", type=float, help="allowed drop vs the model now serving (default 0)")
    ev.add_argument(
        "--min-class-recall",
        type=float,
        help="each class's recall (accuracy on its eval examples) needed to be blessed (default: not gated)",
    )
    ev.add_argument(
        "--max-class-recall-drop",
        type=float,
        help="allowed drop of any one class's recall vs the model now serving, absolute (default: not gated)",
    )
    where = p.add_argument_group("where things go (TFX template conventions)")
    where.add_argument("--pipeline-name", help="default graft")
    where.add_argument("--pipeline-root", help="default tfx_pipeline_output/<pipeline-name>")
    where.add_argument("--metadata-path", help="default tfx_metadata/<pipeline-name>/metadata.db")
    where.add_argument("--serving-dir", help="default <pipeline-root>/serving_model")
    out = p.add_argument_group("output")
    out.add_argument("--summary-json", help="write the end-of-run summary here as JSON")
    out.add_argument("--verbose", action="store_true", help="show every framework log line on the terminal")
    out.add_argument(
        "--no-cache", action="store_true", help="re-execute every component even if its inputs are unchanged"
    )
    out.add_argument(
        "--force",
        action="store_true",
        help="train even when the data (span and input fingerprint), config and code equal those the serving model "
        "was made from (by default such a run stops after ExampleGen, exit 0, nothing trained); implies --no-cache",
    )
    out.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="one run of a pipeline at a time: when another run of it is in progress, wait up to SECONDS for it "
        f"(default 0: exit at once with code {EXIT_BUSY}, naming the run that holds it)",
    )
    return p


_CONFIG_FLAGS = (
    "data_dir",
    "tfrecord_dir",
    "text_data",
    "eval_data",
    "backbone",
    "weights",
    "text_preprocessor",
    "image_size",
    "stages",
    "epochs",
    "fine_tune_epochs",
    "batch_size",
    "init_from",
    "learning_rate",
    "tuner_trials",
    "on_drift",
    "min_accuracy",
    "max_accuracy_drop",
    "promote_when",
    "min_class_recall",
    "max_class_recall_drop",
    "pipeline_name",
    "pipeline_root",
    "metadata_path",
    "serving_dir",
)


def config_from_args(args: argparse.Namespace) -> cfg.GraftConfig:
    overrides = {name: getattr(args, name) for name in _CONFIG_FLAGS}
    if args.no_cache:
        overrides["enable_cache"] = False
    if args.force:
        overrides["force_retrain"] = True
    return cfg.load_config(args.config, overrides)


def describe_drift(check: dict) -> str:
    from components.drift.compare import describe

    return describe(check)


def format_summary(summary: dict) -> str:
    lines = ["", "Summary"]
    ingest = summary.get("ingest")
    if ingest:
        lines.append(
            f"  {'texts' if summary.get('kind') == 'text' else 'images'}: {ingest['total']} seen, "
            f"{ingest['accepted']} accepted, {len(ingest['quarantined'])} quarantined, {ingest['skipped']} skipped by rule"
            + (f" ({ingest['truncated']} truncated to max_text_chars)" if ingest.get("truncated") else "")
        )
        for record in ingest["quarantined"][:10]:
            lines.append(f"    quarantined {record['path']}: {record['reason']}")
    drift = summary.get("drift")
    if drift:
        lines.append(
            f"  drift against serving version {drift['reference']['version']} (on_drift: {drift['on_drift']}):"
        )
        for check in drift["checks"]:
            lines.append(f"    {'FIRED' if check['drifted'] else 'ok   '} {describe_drift(check)}")
        for skipped in drift["not_run"]:
            lines.append(f"    not run: {skipped['check']}: {skipped['reason']}")
    if summary.get("run_skipped_reason"):
        lines.append(f"  not trained: {summary['run_skipped_reason']}")
        return "\n".join(lines)
    choices = summary.get("training_choices")
    if choices:
        lines.append("  training: " + describe_choices(choices))
    metrics, intervals = summary.get("metrics", {}), summary.get("metric_intervals") or {}

    def interval(name: str) -> str:
        found = intervals.get(name)
        return f" [95% interval {found['lower']:.4f}-{found['upper']:.4f}]" if found else ""

    if metrics.get("sparse_categorical_accuracy") is not None:
        text = f"  eval accuracy: {metrics['sparse_categorical_accuracy']:.4f}{interval('sparse_categorical_accuracy')}"
        if metrics.get("baseline_sparse_categorical_accuracy") is not None:
            text += f" (serving model: {metrics['baseline_sparse_categorical_accuracy']:.4f})"
        lines.append(text)
    judged = summary.get("promotion")
    if judged:
        lines.append(f"  promotion ({judged['promote_when']}): {judged['reason']}")
    golden = summary.get("golden")
    if golden:
        accuracy = golden["metrics"].get("sparse_categorical_accuracy")
        found = golden["metric_intervals"].get("sparse_categorical_accuracy")
        text = f"  golden set ({golden.get('ingest', {}).get('accepted', '?')} examples): accuracy " + (
            f"{accuracy:.4f}" if accuracy is not None else "n/a"
        )
        text += f" [95% interval {found['lower']:.4f}-{found['upper']:.4f}]" if found else ""
        baseline = golden["metrics"].get("baseline_sparse_categorical_accuracy")
        text += f" (serving model: {baseline:.4f})" if baseline is not None else ""
        lines.append(text + f", {'blessed' if golden['blessed'] else 'NOT blessed'}")
    lines.append(f"  blessed: {'yes' if summary['blessed'] else 'no'}")
    for reason in summary.get("not_blessed_because", []):
        lines.append(f"    {reason}")
    tflite = summary.get("tflite")
    if tflite:
        lines.append(
            f"  TFLite, checked on {tflite['eval_images']} eval images (SavedModel: accuracy "
            f"{tflite['savedmodel_accuracy']:.4f}, {tflite['savedmodel_bytes'] / 1024:.0f} KB, "
            f"{tflite['savedmodel_ms_per_image']:.2f} ms per image):"
        )
        for kind, entry in tflite["models"].items():
            if "accuracy" in entry:
                text = (
                    f"    {kind}: accuracy {entry['accuracy']:.4f}, {entry['bytes'] / 1024:.0f} KB, "
                    f"{entry['ms_per_image']:.2f} ms per image, {'passed' if entry['passed'] else 'FAILED'}"
                )
            else:
                text = f"    {kind}: FAILED"
            lines.append(text + (f": {entry['reason']}" if not entry["passed"] else ""))
    if summary.get("pushed_model_dir"):
        lines.append(f"  pushed to: {summary['pushed_model_dir']}")
    else:
        lines.append(f"  pushed: nothing ({summary.get('push_skipped_reason') or 'not blessed'})")
    return "\n".join(lines)


def describe_choices(choices: dict) -> str:
    """What the Trainer ran and why, in a line: '4 stages: head 75 epochs (300 steps) at 6.9e-03
    (range test), ...; validation: none carved (100 training examples)'."""
    search = choices.get("rate_search")
    stages = ", ".join(
        f"{s['name']} {s['epochs']} epochs ({s['steps']} steps) at {s['learning_rate']:.2g}"
        for s in choices.get("stages", [])
    )
    parts = [stages + (f" (rate {search['rate']:.2g} from a range test)" if search else "")]
    if choices.get("tuner"):
        parts.append("Tuner's best: " + search_space.describe(choices["tuner"]))
    if choices.get("validation_percent"):
        parts.append(f"validation: {choices['validation_examples']} examples carved ({choices['validation_percent']}%)")
    else:
        parts.append(f"validation: none carved ({choices.get('training_examples')} training examples)")
    if choices.get("head_l2"):
        parts.append(f"head L2 {choices['head_l2']:.2g}")
    if choices.get("devices"):
        parts.append(describe_devices(choices["devices"]))
    return "; ".join(parts)


def run_command(argv) -> int:
    """`graft run`: parse, validate, run locally, report."""
    args = _run_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except cfg.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    for name, value in config.runtime_env.items():  # TensorFlow is not loaded yet
        os.environ.setdefault(name, value)
    run_id = new_run_id()
    try:
        lock = hold_run_lock(config, run_id, args.wait)
    except locks.LockBusy as err:
        print(
            f"error: another run of pipeline {config.pipeline_name!r} is in progress: {err}. Wait for it with "
            f"--wait SECONDS, or run again later (exit code {EXIT_BUSY}).",
            file=sys.stderr,
        )
        return EXIT_BUSY
    with lock:
        return _run_holding_the_lock(config, args, run_id)


def new_run_id() -> str:
    """This run's id: its start time and a random part (two runs started in the same second
    differ). TFX's run context, the report folder and the log file are named by it."""
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def hold_run_lock(config, run_id: str, wait_seconds: float) -> locks.Lock:
    """The pipeline's run lock (its pipeline root's): at once, or after waiting up to
    `wait_seconds` for the run holding it, saying so; raises locks.LockBusy."""
    holder = locks.describe("run", run_id)
    try:
        lock = locks.acquire(config.pipeline_root, RUN_LOCK_FILE, holder)
    except locks.LockBusy as err:
        if not wait_seconds:
            raise
        print(f"waiting up to {wait_seconds:g}s: {err}", flush=True)
        lock = locks.acquire(config.pipeline_root, RUN_LOCK_FILE, holder, wait_seconds=wait_seconds)
    if lock.previous:
        print(
            f"note: run {lock.previous.get('run_id', '?')} (process {lock.previous.get('pid', '?')} on "
            f"{lock.previous.get('host', '?')}) ended without releasing the run lock (killed?); taken over",
            flush=True,
        )
    return lock


def _run_holding_the_lock(config, args, run_id: str) -> int:
    log_path = os.path.join(config.local_output_dir, "logs", f"run-{run_id}.log")
    size = f" at {config.input_size}px" if config.kind == "image" else ""
    print(f"Graft: {config.backbone}{size} on {config.data_path}")
    if config.backbone == registry.TEXT_TFIDF.name and config.stages == AUTO:
        print("text_tfidf: TF-IDF of words and word pairs (computed in Transform), a logistic-regression head")
    elif config.from_scratch and config.stages == AUTO and config.kind == "text":
        print("text_scratch: the encoder learns from scratch (stages 'scratch': every layer trains)")
    elif config.from_scratch and config.stages == AUTO:
        print(
            "--weights none: training from scratch (stages 'scratch': every layer trains; BatchNorm trains with "
            f"momentum {config.batchnorm_momentum_used} and is re-estimated over the training data after each stage)"
        )
    print(f"Full log: {os.path.abspath(log_path)}" if not args.verbose else "Verbose: all logs below")
    # Logs go to the file from here on, so that TensorFlow's start-up noise stays out of sight.
    progress = progress_view.start(log_path, args.verbose)
    try:
        preflight.check(config)
    except cfg.ConfigError as err:
        progress.err.write(f"error: {err}\n")
        return EXIT_CONFIG
    try:
        from pipeline.local_dag import run_locally  # TFX: imported only once the checks have passed

        summary = run_locally(config, run_id, progress)
    except Exception as err:  # the run failed: say where and why, keep the traceback in the log
        logging.getLogger("graft.run").debug("run failed", exc_info=True)
        traceback.print_exc()  # to the log file
        where = f" in {progress.current}" if progress.current else ""
        message = str(err).strip() or type(err).__name__
        progress.stream.write(f"\nerror{where}: {message}\nSee the full log: {os.path.abspath(log_path)}\n")
        return EXIT_FAILED
    summary["log_file"] = os.path.abspath(log_path)
    summary["wall_seconds"] = round(time.time() - progress.started, 1)
    report_dir = os.path.join(config.local_output_dir, "reports", f"run-{run_id}")
    summary["report"] = os.path.abspath(write_report(summary, config, report_dir))
    progress.stream.write(format_summary(summary) + f"\n  wall time: {summary['wall_seconds']}s\n")
    for path in filter(None, [os.path.join(report_dir, "summary.json"), args.summary_json]):
        _write_json(path, summary)
    progress.stream.write(f"  report: {summary['report']}\n")
    if args.summary_json:
        progress.stream.write(f"  summary: {os.path.abspath(args.summary_json)}\n")
    return EXIT_OK


def _write_json(path: str, data) -> None:
    """Written aside, then renamed: a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=True)
    os.replace(tmp, path)


def backbones_command(argv) -> int:
    p = argparse.ArgumentParser(prog="graft backbones", description="The backbones Graft offers, by name.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    rows = [
        {
            "name": b.name,
            "kind": b.kind,
            "input_size": b.default_size or None,
            "preprocessing": b.preprocess,
            "parameters": b.params,
            "available": registry.available(b),
            "description": b.description,
        }
        for b in map(registry.get, registry.names())
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    print(f"{'name':<22}{'kind':<6}{'input size':>11}  {'preprocessing':<14}{'parameters':>13}")
    for r in rows:
        params = f"{r['parameters']:>13,}" if r["parameters"] else f"{'(model)':>13}"
        size = r["input_size"] or "-"
        note = "" if r["available"] else "  (missing from the installed Keras: skipped)"
        note += f"  {r['description']}" if r["description"] else ""
        print(f"{r['name']:<22}{r['kind']:<6}{size:>11}  {r['preprocessing']:<14}{params}{note}")
    print("\nhub: --backbone hub --weights <TF Hub URL or local SavedModel dir> --image-size <its size>")
    print("hub_text: --backbone hub_text --weights <TF Hub sentence encoder URL or SavedModel dir> --text-data ...")
    print(
        "hub_bert: --backbone hub_bert --weights <encoder URL or dir> --text-preprocessor <its preprocessing "
        "model> --text-data ... (trainable: N counts transformer blocks)"
    )
    print("text_tfidf (the default for --text-data): TF-IDF of words and word pairs, a linear head")
    print("text_scratch: --backbone text_scratch --text-data ...")
    return EXIT_OK


def rollback_command(argv) -> int:
    p = argparse.ArgumentParser(
        prog="graft rollback",
        description="Make an earlier serving version the newest "
        "again (copied in as a new version number, so TF Serving switches to it).",
    )
    p.add_argument(
        "--serving-dir", required=True, type=object_store_path, help="the serving directory (TF Serving layout)"
    )
    p.add_argument("--to", type=int, help="version to restore (default: the one before the newest)")
    args = p.parse_args(argv)
    try:
        # Under the serving directory's publish lock, as the Pusher publishes: a push landing
        # meanwhile cannot slip between what this rollback replaces and its new version.
        lock = (
            locks.acquire(args.serving_dir, PUBLISH_LOCK_FILE, locks.describe("rollback", args.serving_dir), 600)
            if serving_dir.versions(args.serving_dir)
            else contextlib.nullcontext()  # nothing to roll back: the error below, no lock file left behind
        )
        with lock:
            before = serving_dir.newest(args.serving_dir)
            restored = serving_dir.rollback(args.serving_dir, args.to, files_for=provenance.rollback_files)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"rolled back: {before} -> {restored}")
    return EXIT_OK


def history_command(argv) -> int:
    p = argparse.ArgumentParser(
        prog="graft history",
        description="The versions in a serving directory, oldest first, from the provenance each push "
        "recorded (<version>/provenance.json): when and why each was pushed or rolled back, its accuracy and "
        "the serving model's on the same eval split, the version it replaced, its span. The newest serves.",
    )
    p.add_argument(
        "--serving-dir", required=True, type=object_store_path, help="the serving directory (TF Serving layout)"
    )
    p.add_argument("--json", action="store_true", help="one JSON list of the rows, for machines")
    args = p.parse_args(argv)
    if not os.path.isdir(args.serving_dir) and "://" not in args.serving_dir:
        print(f"error: --serving-dir {args.serving_dir}: no such directory", file=sys.stderr)
        return EXIT_CONFIG
    rows = provenance.history(args.serving_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    if not rows:
        print(f"{args.serving_dir}: no versions")
        return EXIT_OK

    def cell(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    print(
        f"{'version':<12} {'pushed at (UTC)':<26} {'accuracy':>8} {'serving':>8} {'golden':>8} {'replaced':<12} {'span':>4}  reason"
    )
    for row in rows:
        mark = " *" if row["serving"] else ""
        print(
            f"{str(row['version']) + mark:<12} {cell(row['pushed_at']):<26} {cell(row['accuracy']):>8} "
            f"{cell(row['serving_accuracy_then']):>8} {cell(row.get('golden_accuracy')):>8} "
            f"{cell(row['replaced_version']):<12} {cell(row['span']):>4}  "
            f"{row['reason']}"
        )
    print(
        "* serves now; accuracy: on the eval split of its run; serving: the model then serving, same split; "
        "golden: on the golden set (eval_data), when there was one"
    )
    return EXIT_OK


def predict_command(argv) -> int:
    p = argparse.ArgumentParser(
        prog="graft predict",
        description="Classify images (or texts, with a text model) with a pushed model; prints one JSON "
        "line per input (path, class_name, probability, top_k; or path and error for an input that cannot be "
        "classified). Exit code 0: every input classified; 1: some could not be (counted on stderr); 2: no model.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="images or folders of images; for a text model: .txt files (one text each) or folders of them, "
        "CSV/TSV/JSON Lines tables (one text per row, see --text-column), or - for one text per line on stdin",
    )
    p.add_argument(
        "--serving-dir", required=True, type=object_store_path, help="the serving directory (TF Serving layout)"
    )
    p.add_argument("--version", type=int, help="model version (default: the newest)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--text-column", default="text", help="text models: the tables' text column")
    p.add_argument(
        "--tflite",
        choices=["float", "int8"],
        help="answer with the version's TFLite model instead of the SavedModel, after the client-side "
        "preprocessing a device does (decode to RGB, bilinear resize, values 0-255): what a phone would answer",
    )
    args = p.parse_args(argv)
    from components.serving import predict  # here: it loads TensorFlow

    try:
        model_dir = predict.resolve_model_dir(args.serving_dir, args.version)
        if predict.model_kind(model_dir) == "text":
            if args.tflite:
                raise FileNotFoundError("--tflite: TFLite export applies to image models only")
            total = None
            results = predict.predict_texts(model_dir, args.inputs, args.batch_size, args.top_k, None, args.text_column)
        else:
            files = predict.expand_inputs(args.inputs)
            total = len(files)
            results = predict.predict_files(model_dir, files, args.batch_size, args.top_k, tflite=args.tflite)
        first = next(results, None)  # a missing model is found here, before any output
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    quiet = total < 2 * args.batch_size if total is not None else not sys.stderr.isatty()
    seen = failed = 0
    with tqdm(total=total, unit="input", file=sys.stderr, disable=quiet) as bar:
        for result in itertools.chain([first] if first else [], results):
            print(json.dumps(result, ensure_ascii=False), flush=True)
            seen, failed = seen + 1, failed + ("error" in result)
            bar.update(1)
    if failed:
        print(
            f"error: {failed} of {seen} inputs could not be classified (their lines hold the reason)", file=sys.stderr
        )
        return EXIT_FAILED
    return EXIT_OK


COMMANDS = {
    "run": "run the pipeline locally (same as python local_runner.py)",
    "backbones": "list the backbones and their input size, preprocessing and size",
    "predict": "classify images or texts with a pushed model (JSON lines)",
    "rollback": "make an earlier serving version the newest again",
    "history": "the versions in a serving directory: when and why each was pushed, what serves now",
    "kfp": "compile, submit, schedule or run-local the pipeline on Kubeflow Pipelines v2",
}


# A path option that may name an object store: minio:// read as s3:// (files.normalize). Module
# level: predict_command has a local named `files`.
object_store_path = files.normalize


def entry() -> None:
    """The `graft` command: main's exit status, whatever filesystem it used (files.exit_process)."""
    files.exit_process(main())


def main(argv=None) -> int:
    # Library deprecation chatter (Python 3.10 support notices, TF C++ start-up lines) is not
    # for the terminal; `graft run` keeps all of it in its log file.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: graft COMMAND [options]   (graft COMMAND --help for its options)\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<12}{text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return EXIT_CONFIG
        return EXIT_OK
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run_command(rest)
    if command == "kfp":
        from kubeflow import cli as kfp_cli  # here: it pulls in kfp

        return kfp_cli.main(rest)
    return {
        "backbones": backbones_command,
        "predict": predict_command,
        "rollback": rollback_command,
        "history": history_command,
    }[command](rest)
