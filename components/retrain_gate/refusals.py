"""Candidates the Pusher refused, remembered in the serving directory, so that the next scheduled
run on the same data, config and code does not train the same candidate again to be refused
again (a night of GPU time each night until new data arrives).

One small JSON file per training key under `<serving_dir>/.graft-refused/` (TF Serving loads only
numeric version folders): the key, the serving version it was judged against, why it was refused,
the run and the time. A record counts only while that version still serves: after a push or a
rollback the same candidate meets another model and is trained and judged again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

from components import files

REFUSED_DIR = ".graft-refused"


def _path(serving_dir: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return os.path.join(serving_dir, REFUSED_DIR, f"{digest}.json")


def record(
    serving_dir: str, key: dict, judged_against: str, reason: str, run_id: str | None, evaluation_key: str = ""
) -> None:
    """Remembers that the candidate made from `key` was refused against version `judged_against`
    ("" for nothing serving), judged under `evaluation_key` (RetrainGateSettings)."""
    import tensorflow as tf  # only where a refusal is written (the Pusher): the gate reads through files

    path = _path(serving_dir, key)
    tf.io.gfile.makedirs(os.path.dirname(path))
    entry = {
        "training_key": key,
        "judged_against": judged_against,
        "evaluation_key": evaluation_key,
        "reason": reason,
        "pipeline_run_id": run_id,
        "refused_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    staging = path + ".partial"
    with tf.io.gfile.GFile(staging, "w") as f:
        f.write(json.dumps(entry, indent=1, sort_keys=True))
    tf.io.gfile.rename(staging, path, overwrite=True)


def find(serving_dir: str, key: dict) -> dict | None:
    """The refusal recorded for `key`, or None."""
    path = _path(serving_dir, key)
    if not files.exists(path):
        return None
    try:
        entry = json.loads(files.read(path))
    except ValueError:
        return None  # unreadable: train (the safe side)
    return entry if isinstance(entry, dict) and entry.get("training_key") == key else None
