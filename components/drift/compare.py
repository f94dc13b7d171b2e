"""A new span against the data the serving model was trained on (the examples artifact its
provenance names): every check, and whether the run is blocked."""

from __future__ import annotations

from absl import logging

from components import files
from components.drift import sample, statistics
from components.drift.embedding import embedding_check, load_model
from components.drift.settings import DriftSection

MAX_EXAMPLES = 5000  # per side, for the statistics checks: a bounded read of a big span


def _not_run(check: str, reason: str) -> dict:
    return {"check": check, "reason": reason}


def describe(check: dict) -> str:
    below = check["check"] == "embedding"  # a p-value: drift is a small one
    return (
        f"{check['check']}: {check['feature']} {check['statistic']} {check['value']:g} "
        f"{'<' if below else '>'} {check['threshold']:g}"
    )


def blocked_reason(report: dict) -> str:
    fired = "; ".join(describe(c) for c in report["checks"] if c["drifted"])
    return (
        f"drift: the new data is not like what serving version {report['reference']['version']} was trained on "
        f"({fired}); nothing trained, nothing pushed (drift.on_drift: warn, or --force, trains anyway)"
    )


def compare(settings: DriftSection, new_examples_uri: str, version_dir: str, record: dict, model=None) -> dict:
    """The drift report: `checks` (each: check, feature, statistic, value, threshold, drifted),
    `not_run` (each: check, reason), `blocked` (a check fired and on_drift is block). `model`: the
    serving SavedModel, loaded (seconds) when not given."""
    data = (record or {}).get("data") or {}
    old_uri = data.get("examples_uri")
    # A model trained on a span window (span_window) was trained on each of its spans' data: read
    # newest first, so that the sample's limit leaves out the oldest spans, not the newest.
    old_uris = [w["examples_uri"] for w in reversed(data.get("window") or [])] or [old_uri]
    report = {
        "on_drift": settings.on_drift,
        "reference": {"version": version_dir.rstrip("/").rsplit("/", 1)[-1], "span": data.get("span")},
        "checks": [],
        "not_run": [],
        "blocked": False,
    }
    gone = [uri for uri in old_uris if not uri or not files.isdir(uri)]
    old_uris = [uri for uri in old_uris if uri not in gone]
    if not old_uris:
        report["not_run"].append(
            _not_run("all", f"the serving model's training data ({gone[0] or 'not recorded'}) is gone")
        )
        return report
    if gone:  # compared with the spans of its window that remain
        report["not_run"].append(_not_run("window", f"{len(gone)} of its spans' data gone, first {gone[0]}"))
    report["reference"]["examples_uri"] = old_uri
    if len(old_uris) > 1:
        report["reference"]["window"] = data["window"]
    trained_on = sample.read(old_uris, ("train",), MAX_EXAMPLES)
    # Every trained example's digest (a span often holds the last one's): a second pass over the
    # split only when the first stopped at its limit.
    whole = trained_on.count < MAX_EXAMPLES
    trained = frozenset(trained_on.contents) if whole else sample.contents(old_uris, "train")
    held_out = sample.read(old_uris, ("eval",), MAX_EXAMPLES, keep_records=settings.embedding_examples)
    old = trained_on.joined(held_out)
    # The new data alone: examples the serving model was trained on, carried into this span,
    # would dilute a change in what was added.
    new = sample.read(new_examples_uri, ("train", "eval"), MAX_EXAMPLES, skip=trained)
    few = min(old.count, new.count) < settings.min_examples
    if few:
        report["not_run"].append(
            _not_run(
                "statistics",
                f"too few examples ({old.count} then, {new.count} new now; drift.min_examples: {settings.min_examples})",
            )
        )
    else:
        _guarded(report, "statistics", lambda: statistics.feature_checks(old, new, settings))
        if any(new.texts) and any(old.texts):
            _guarded(report, "text", lambda: [statistics.oov_check(trained_on, held_out, new, settings)])
    _guarded(
        report,
        "embedding",
        lambda: _embedding(settings, model or version_dir, held_out, new_examples_uri, trained, report),
    )
    report["blocked"] = settings.on_drift == "block" and any(c["drifted"] for c in report["checks"])
    for check in report["checks"]:
        logging.info("Drift %s: %s", "FIRED" if check["drifted"] else "ok", describe(check))
    return report


def _guarded(report: dict, check: str, run) -> None:
    """A check's results into the report; a check that fails (an unreadable file, a model that
    does not load) is reported as not run, with its error, and blocks nothing."""
    try:
        report["checks"] += run()
    except Exception as error:  # noqa: BLE001  (any failure: reported, never a crashed gate)
        logging.warning("Drift check %s failed: %s", check, error)
        report["not_run"].append(_not_run(check, f"failed: {type(error).__name__}: {str(error)[:300]}"))


def _embedding(settings, model, held_out, new_examples_uri, trained, report) -> list:
    """The embedding check on the serving model's held-out examples against new ones it was not
    trained on (its training examples sit closer to what it learned, and would read as drift)."""
    from components.contract import EMBEDDING_SIGNATURE

    count = settings.embedding_examples
    new = sample.read(new_examples_uri, ("train", "eval"), count, skip=trained, keep_records=count)
    old_records = held_out.records[:count]
    if min(len(old_records), new.count) < 30:
        report["not_run"].append(
            _not_run(
                "embedding", f"too few examples ({len(old_records)} held out then, {new.count} new now; 30 needed)"
            )
        )
        return []
    model = load_model(model) if isinstance(model, str) else model
    if EMBEDDING_SIGNATURE not in model.signatures:
        report["not_run"].append(_not_run("embedding", f"the serving model has no {EMBEDDING_SIGNATURE} signature"))
        return []
    return [embedding_check(model, old_records, new.records, settings.embedding_p_value)]
