"""Whether a run trains: its training key (data, model config, model code) against the one the
serving version was made from (recorded in its provenance.json by the Pusher).

A scheduled run that finds nothing new stops here instead of spending a night of GPU time on a
model that already serves. The key's data part is what TFX's ExampleGen driver records on the
examples: the span and the input fingerprint (file count, bytes and modification times of the
span's files; copying or touching files counts as new data, which retrains: the safe side).
"""

from __future__ import annotations

import json

FORCED = "forced (--force): training whatever the serving model was made from"


def training_key(span, input_fingerprint, model_config: dict, model_code: str, data_listing=None) -> dict:
    """What a trained model is a function of, as recorded in provenance.json ("training_key").
    `data_listing`: ExampleGen's digest of which file (text) is in which class (None for
    TFRecords, whose relabelling edits a file and so its fingerprint)."""
    return {
        "span": span,
        "input_fingerprint": input_fingerprint,
        "data_listing": data_listing,
        "model_config": json.loads(json.dumps(model_config, sort_keys=True, default=str)),
        "model_code": model_code,
    }


def _changed_options(old: dict, new: dict) -> list[str]:
    names = sorted(set(old) | set(new))
    return [f"{n}: {old.get(n)!r} -> {new.get(n)!r}" for n in names if old.get(n) != new.get(n)]


def new_data(key: dict, serving_record: dict | None) -> bool:
    """Whether the data of `key` differs from what the serving version was trained on (then the
    drift checks compare the two)."""
    recorded = (serving_record or {}).get("training_key") or {}
    return any(recorded.get(name) != key[name] for name in ("span", "input_fingerprint", "data_listing"))


def decide(
    key: dict,
    serving_version: str | None,
    serving_record: dict | None,
    force: bool,
    refused: dict | None = None,
    evaluation_key: str | None = None,
) -> tuple[bool, str]:
    """(train?, why) for a run whose training key is `key`, with `serving_version` (a version
    folder name, None when nothing serves), its provenance record, and the Pusher's record of a
    candidate with this key refused before (refusals.find), if any: final only under the same
    `evaluation_key` (golden set, Evaluator and Pusher code; None: never final)."""
    if force:
        return True, FORCED
    if (
        refused
        and key["input_fingerprint"]
        and evaluation_key
        and refused.get("evaluation_key") == evaluation_key
        and refused.get("training_key") == key
        and (refused.get("judged_against") or None) == serving_version
    ):
        against = f"serving version {serving_version}, which still serves" if serving_version else "nothing serving"
        # Kubeflow's executors get no pipeline run id from TFX: then only the time says which run.
        run = f"run {refused['pipeline_run_id']} " if refused.get("pipeline_run_id") else "a run "
        return False, (
            f"nothing new: the same data, config and code were trained in {run}"
            f"({refused.get('refused_at')}) and refused against {against}: {refused.get('reason')}; "
            "nothing trained (--force trains anyway)"
        )
    if serving_version is None:
        return True, "nothing serves yet"
    recorded = (serving_record or {}).get("training_key")
    if not recorded:
        return True, f"serving version {serving_version} records no training key (pushed before Graft recorded one)"
    if not key["input_fingerprint"]:
        return True, "the input's fingerprint is unknown (ExampleGen recorded none), so the data cannot be compared"
    if (recorded.get("span"), recorded.get("input_fingerprint")) != (key["span"], key["input_fingerprint"]):
        span_then, span_now = recorded.get("span"), key["span"]
        if span_then != span_now:
            return (
                True,
                f"new data: span {span_now} (serving version {serving_version} was trained on span {span_then})",
            )
        return True, f"new data: the input's fingerprint differs from serving version {serving_version}'s"
    if recorded.get("data_listing") != key["data_listing"]:
        return True, f"new data: files moved between classes, added or removed since serving version {serving_version}"
    changed = _changed_options(recorded.get("model_config") or {}, key["model_config"])
    if changed:
        return True, f"config changed since serving version {serving_version}: " + "; ".join(changed[:5]) + (
            f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
        )
    if recorded.get("model_code") != key["model_code"]:
        return True, f"the model's code changed since serving version {serving_version}"
    span = f"span {key['span']}, " if key["span"] is not None else ""
    return False, (
        f"nothing new: serving version {serving_version} was trained on the same data ({span}same input "
        "fingerprint), config and code; nothing trained, nothing pushed (--force trains anyway)"
    )
