"""Promotion against the model now serving, judged on the 95 % confidence interval of the
accuracy change that TFMA computes (candidate minus serving, on the same eval examples, so the
interval is paired), not on the point estimate alone.

TFMA's thresholds always compare the point estimate (its metrics_validator takes the unsampled
value), so two models trained the same way on the same data pass `max_accuracy_drop: 0` about
half of the time: the serving model flip-flops on noise. The rules:

- `better` (default): promoted only when the interval's lower bound is above zero: the
  candidate is better beyond what resampling the eval split explains;
- `not_worse`: refused only when the interval's upper bound is below `-max_accuracy_drop`: the
  candidate is worse than allowed beyond doubt (new data flows in unless clearly worse);
- `point`: the point estimate against `-max_accuracy_drop` alone (TFMA's threshold; Graft
  before the intervals).

Under `point` the bound is TFMA's own threshold (eval_config.py); under the other two TFMA keeps
`min_accuracy` (and a relative drop bound, when set) and the change is judged here alone. With
nothing serving there is no change to judge; only `min_accuracy` applies. No interval (TFMA could
not compute one): `better` and `not_worse` refuse, naming `point` as the way to decide without one.
"""

from __future__ import annotations

import json
import os

PROMOTION_FILE = "promotion.json"  # in the evaluation artifact: the rule, the interval, the verdict


def judge(promote_when: str, max_accuracy_drop: float, change: dict | None) -> tuple[bool, str]:
    """(promoted?, why) for the accuracy change `change` ({"value", "lower", "upper"}, None
    when TFMA computed no interval)."""
    if promote_when == "point":
        return True, "judged on the point estimate (promote_when: point)"
    if change is None or change.get("lower") is None:
        return False, (
            f"promote_when: {promote_when} needs the confidence interval of the accuracy change against the model "
            "now serving, and TFMA computed none (too few eval examples?); use promote_when: point to judge "
            "on the point estimate"
        )
    interval = f"{change['value']:+.4f}, 95 % interval [{change['lower']:+.4f}, {change['upper']:+.4f}]"
    if promote_when == "better":
        if change["lower"] > 0:
            return True, f"accuracy change vs the model now serving {interval}: better beyond noise"
        return False, (
            f"accuracy change vs the model now serving {interval}: the interval reaches {change['lower']:+.4f}, "
            "so the candidate is not better beyond noise (promote_when: better)"
        )
    if change["upper"] < -max_accuracy_drop:
        return False, (
            f"accuracy change vs the model now serving {interval}: worse than the allowed "
            f"{-max_accuracy_drop:+.4f} beyond noise (promote_when: not_worse)"
        )
    return True, f"accuracy change vs the model now serving {interval}: not worse than allowed beyond noise"


def write(uri: str, record: dict) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(uri)
    with tf.io.gfile.GFile(os.path.join(uri, PROMOTION_FILE), "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))


def read(uri: str) -> dict | None:
    """The promotion record an evaluation holds, or None (evaluated before the rule existed)."""
    from components import files

    path = os.path.join(uri, PROMOTION_FILE)
    return json.loads(files.read(path)) if files.exists(path) else None
