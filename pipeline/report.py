"""The run report: one offline HTML page (plus the same data as JSON and two PNG plots)
that says what data went in, how training went, how the model scored, and why it was or was
not promoted."""

from __future__ import annotations

import html
import json
import os


def _tflite_section(tflite) -> str:
    """The on-device models next to the SavedModel, as the Trainer's check measured them."""
    if not tflite:
        return ""
    rows = [
        [
            "SavedModel",
            tflite["savedmodel_accuracy"],
            1.0,
            round(tflite["savedmodel_bytes"] / 1024),
            tflite["savedmodel_ms_per_image"],
            "reference",
        ]
    ]
    for kind, entry in tflite["models"].items():
        verdict = ("passed" if entry["passed"] else "FAILED: " + entry["reason"]) + (
            ", pushed" if entry.get("pushed") else ""
        )
        rows.append(
            [
                f"TFLite {kind}",
                entry.get("accuracy", ""),
                entry.get("agreement_with_savedmodel", ""),
                round(entry["bytes"] / 1024) if "bytes" in entry else "",
                entry.get("ms_per_image", ""),
                verdict,
            ]
        )
    return f"<h2>On-device models ({tflite['eval_images']} eval images)</h2>" + _table(
        ["model", "eval accuracy", "same class as SavedModel", "KB", "ms per image (CPU)", "check"], rows
    )


def _plot_history(history: list, path: str) -> bool:
    if not history:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = list(range(1, len(history) + 1))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if any(key in row for row in history):
                ax.plot(x, [row.get(key) for row in history], style, label=key, markersize=3)
        boundaries = [i + 0.5 for i in range(1, len(history)) if history[i]["stage"] != history[i - 1]["stage"]]
        for b in boundaries:
            ax.axvline(b, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle("Training curves (vertical lines: stage changes)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def confusion_matrix(entries: list, num_classes: int) -> list[list[float]]:
    matrix = [[0.0] * num_classes for _ in range(num_classes)]
    for actual, predicted, count in entries:
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            matrix[actual][predicted] += count
    return matrix


def _plot_confusion(matrix: list, class_names: list, path: str) -> bool:
    if not matrix:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1 + 0.5 * n))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    peak = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{matrix[i][j]:.0f}",
                ha="center",
                va="center",
                color="white" if matrix[i][j] > peak / 2 else "black",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax)
    ax.set_title("Confusion matrix (eval split)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def describe_devices(devices: dict) -> str:
    """'devices: 1 GPU (NVIDIA L4), mixed_float16' or 'devices: CPU, float32 (CPU FALLBACK: ...)'."""
    where = f"{devices['gpu_count']} GPU ({', '.join(devices['gpus'])})" if devices["gpu_count"] else "CPU"
    text = f"devices: {where}, {devices['precision']}"
    if devices.get("cpu_fallback"):
        text += f" (CPU FALLBACK: the step was given {devices['expected_gpus']} GPU(s) TensorFlow could not see)"
    return text


def _table(header: list, rows: list) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    # None: not applicable (an undefined metric, such as AUC in a one-class slice).
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('n/a' if c is None else str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(summary: dict, config, report_dir: str) -> str:
    """Writes report.html, report.json, training_curves.png, confusion_matrix.png; returns
    the HTML path."""
    os.makedirs(report_dir, exist_ok=True)
    class_names = (summary.get("ingest") or {}).get("class_names") or list(config.class_names or [])
    matrix = confusion_matrix(summary.get("confusion_entries", []), len(class_names))
    curves = os.path.join(report_dir, "training_curves.png")
    heatmap = os.path.join(report_dir, "confusion_matrix.png")
    has_curves = _plot_history(summary.get("training_history", []), curves)
    has_heatmap = _plot_confusion(matrix, class_names, heatmap)
    metrics = summary.get("metrics", {})
    decision = {
        "blessed": summary["blessed"],
        "thresholds": {
            "min_accuracy": config.min_accuracy,
            "max_accuracy_drop": config.max_accuracy_drop,
            "max_relative_accuracy_drop": config.max_relative_accuracy_drop,
        },
        "failures": summary.get("not_blessed_because", []),
        "pushed_model_dir": summary.get("pushed_model_dir"),
        "push_skipped_reason": summary.get("push_skipped_reason"),
        "retrain": summary.get("retrain"),  # the RetrainGate's decision and why
    }
    per_class = []
    for i, name in enumerate(class_names):
        per_class.append(
            {
                "class": name,
                "precision": metrics.get(f"precision/class_{i}"),
                "recall": metrics.get(f"recall/class_{i}"),
                "accuracy": summary.get("per_class_metrics", {}).get(name, {}).get("sparse_categorical_accuracy"),
                "eval_examples": summary.get("per_class_metrics", {}).get(name, {}).get("example_count"),
            }
        )
    data = {
        "dataset": summary.get("ingest"),
        "training_history": summary.get("training_history", []),
        "training_choices": summary.get("training_choices"),  # the devices used among them
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": {"class_names": class_names, "rows_actual_columns_predicted": matrix},
        "comparison_with_serving": {
            k: v for k, v in metrics.items() if k.startswith("baseline_") or k.endswith("_change")
        },
        "confidence_intervals": summary.get("metric_intervals") or {},  # TFMA's 95 % jackknife intervals, overall
        "promotion": summary.get("promotion"),  # the rule and its verdict on the accuracy change's interval
        "decision": decision,
        "tflite": summary.get("tflite"),
        "plots": {
            "training_curves": curves if has_curves else None,
            "confusion_matrix": heatmap if has_heatmap else None,
        },
    }
    with open(os.path.join(report_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)

    ingest = summary.get("ingest") or {}
    split_rows = [
        [split, name, count]
        for split, counts in (ingest.get("accepted_per_split") or {}).items()
        for name, count in sorted(counts.items())
    ]
    verdict = (
        "BLESSED and pushed"
        if summary.get("pushed_model_dir")
        else "not trained: nothing new"
        if summary.get("run_skipped_reason")
        else ("blessed, not pushed" if summary["blessed"] else "NOT blessed: nothing pushed")
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in decision["failures"]) or (
        f"<li>{html.escape(summary['run_skipped_reason'])}</li>"
        if summary.get("run_skipped_reason")
        else "<li>all thresholds met</li>"
    )
    comparison = data["comparison_with_serving"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Graft run report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>",
        f"<h1>Graft run report: {html.escape(config.pipeline_name)}</h1>",
        f"<h2>Decision: {verdict}</h2><ul>{reasons}</ul>",
        _table(["threshold", "value"], [[k, v] for k, v in decision["thresholds"].items()]),
        f"<p>Pushed to: {html.escape(str(decision['pushed_model_dir'] or decision['push_skipped_reason']))}</p>",
        "<h2>Comparison with the model now serving</h2>",
        _table(["metric", "value"], sorted(comparison.items())) if comparison else "<p>No model was serving.</p>",
        f"<p>Promotion ({html.escape(data['promotion']['promote_when'])}): {html.escape(data['promotion']['reason'])}</p>"
        if data["promotion"]
        else "",
        "<h2>95% confidence intervals (TFMA's jackknife over the eval split)</h2>"
        + _table(
            ["metric", "value", "lower", "upper"],
            [[k, v["value"], v["lower"], v["upper"]] for k, v in sorted(data["confidence_intervals"].items())],
        )
        if data["confidence_intervals"]
        else "",
        "<h2>Dataset</h2>",
        f"<p>{ingest.get('total')} files seen, {ingest.get('accepted')} accepted, "
        f"{len(ingest.get('quarantined', []))} quarantined, {ingest.get('skipped')} skipped by rule.</p>",
        _table(["split", "class", "texts" if summary.get("kind") == "text" else "images"], split_rows),
        _table(["quarantined file", "reason"], [[q["path"], q["reason"]] for q in ingest.get("quarantined", [])])
        if ingest.get("quarantined")
        else "",
        "<h2>Training</h2>",
        f"<p>{html.escape(describe_devices(devices))}</p>"
        if (devices := (summary.get("training_choices") or {}).get("devices"))
        else "",
        "<img src='training_curves.png' alt='training curves'>" if has_curves else "<p>(no history)</p>",
        "<h2>Evaluation (eval split)</h2>",
        _table(["metric", "value"], sorted((k, v) for k, v in metrics.items() if "/class_" not in k)),
        _table(
            ["class", "precision", "recall", "accuracy", "eval examples"],
            [[r["class"], r["precision"], r["recall"], r["accuracy"], r["eval_examples"]] for r in per_class],
        ),
        "<img src='confusion_matrix.png' alt='confusion matrix'>" if has_heatmap else "",
        _tflite_section(summary.get("tflite")),
    ]
    path = os.path.join(report_dir, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
