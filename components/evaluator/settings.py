"""The Evaluator's slice of GraftConfig (its `promotion` execution property), typed."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ComponentSettings

PROMOTE_WHEN = ("better", "not_worse", "point")


@dataclass(frozen=True)
class EvaluatorSettings(ComponentSettings):
    promote_when: str  # better | not_worse | point: how the accuracy change vs the serving model is judged
    max_accuracy_drop: float  # the allowed drop, absolute (not_worse's bound; point's through TFMA)
