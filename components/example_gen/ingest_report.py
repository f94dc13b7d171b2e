"""The ingestion accounting: files seen = accepted + quarantined + skipped, per split and
class, and the checks that stop a run whose data cannot make a sound training set."""

from __future__ import annotations

import json
import os

import tensorflow as tf


class IngestError(RuntimeError):
    """The data cannot make a sound training set; the message says what to fix."""


def _read_jsonl(path: str) -> list:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def accepted_counts(ingest_dir: str, split_names: list) -> dict:
    """{split: {class: accepted examples}}, as the ExampleGen's Beam pipeline counted them."""
    return {split: dict(_read_jsonl(os.path.join(ingest_dir, f"accepted-{split}.jsonl"))) for split in split_names}


def make_report(accepted: dict, quarantined: list, skipped: list, class_names: list, empty_classes=()) -> dict:
    """Seen = accepted + quarantined + skipped, with per split and class counts."""
    total_accepted = sum(sum(c.values()) for c in accepted.values())
    return {
        "total": total_accepted + len(quarantined) + len(skipped),
        "accepted": total_accepted,
        "accepted_per_split": accepted,
        "quarantined": sorted(quarantined, key=lambda r: r["path"]),
        "skipped": len(skipped),
        "skipped_files": skipped,
        "class_names": class_names,
        "empty_class_folders": sorted(set(empty_classes)),
    }


def build_report(ingest_dir: str, listings: dict, class_names: list, split_names: list) -> dict:
    """The image folders' report: quarantine records come from the Beam workers' files."""
    quarantined, skipped, empty = [], [], []
    for index, _, listing in listings.values():
        quarantined += _read_jsonl(os.path.join(ingest_dir, f"quarantine-{index}.jsonl"))
        skipped += listing.skipped
        empty += listing.empty_classes
    return make_report(accepted_counts(ingest_dir, split_names), quarantined, skipped, class_names, empty)


def check_counts(report: dict, min_per_class: int) -> None:
    """Every split got images, and every class has at least `min_per_class` accepted images."""
    for split, counts in report["accepted_per_split"].items():
        if not sum(counts.values()):
            raise IngestError(
                f"split {split!r} received no images; add images (or, for hash splits, raise eval_percent)"
            )
    totals = {}
    for counts in report["accepted_per_split"].values():
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
    short = [f"{name} ({totals.get(name, 0)})" for name in report["class_names"] if totals.get(name, 0) < min_per_class]
    if short:
        raise IngestError(
            f"classes with fewer than min_images_per_class={min_per_class} accepted images: {', '.join(short)}"
        )


def check_quarantine(report: dict, max_fraction: float) -> None:
    """Stops the run when too much was quarantined, naming the worst folders."""
    candidates = report["accepted"] + len(report["quarantined"])
    if not candidates:
        raise IngestError("no image files found")
    fraction = len(report["quarantined"]) / candidates
    if fraction <= max_fraction:
        return
    per_folder = {}
    for record in report["quarantined"]:
        folder = os.path.dirname(record["path"]) or "."
        per_folder[folder] = per_folder.get(folder, 0) + 1
    worst = sorted(per_folder.items(), key=lambda kv: -kv[1])[:5]
    raise IngestError(
        f"{len(report['quarantined'])} of {candidates} images ({fraction:.1%}) were quarantined, above "
        f"max_quarantine_fraction={max_fraction:.0%}. Worst folders: "
        + ", ".join(f"{folder} ({n})" for folder, n in worst)
        + ". Reasons are listed in the run summary; fix or remove those files, or raise the limit."
    )
