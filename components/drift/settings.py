"""The `drift:` section: the checks between a new span and the serving model's training data."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ConfigSection

ON_DRIFT = ("block", "warn", "off")


@dataclass(frozen=True)
class DriftSection(ConfigSection):
    """Thresholds of the drift checks, and what a fired check does. `block` (the default): the run
    trains nothing and pushes nothing, and says which checks fired; a person looks, then reruns with
    `on_drift: warn` (or --force) to train on the data as it is. `warn`: the run trains and records
    the checks. `off`: no check runs."""

    on_drift: str = "block"
    label_linf: float = 0.1  # largest change in one class's share (TFDV's L-infinity comparator)
    numeric_js: float = 0.1  # image brightness, text length (TFDV's Jensen-Shannon, on the old 1-99 % range)
    property_linf: float = 0.1  # largest change in the share of one image format, height, width or channels
    oov_increase: float = 0.05  # text: rise of the out-of-vocabulary word rate over the old held-out rate
    embedding_p_value: float = 0.01  # MMD two-sample test in the serving model's feature space
    embedding_examples: int = 200  # per side, for the embedding test
    min_examples: int = 100  # per side: fewer, and a statistics check is reported as not run

    SECTION = "drift"

    def problems(self) -> list[str]:
        problems = []
        if self.on_drift not in ON_DRIFT:
            problems.append(f"drift.on_drift must be one of {', '.join(ON_DRIFT)} (got {self.on_drift!r})")
        for name in ("label_linf", "numeric_js", "property_linf", "oov_increase"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                problems.append(f"drift.{name} must be a number in (0, 1] (got {value!r})")
        if (
            isinstance(self.embedding_p_value, bool)
            or not isinstance(self.embedding_p_value, (int, float))
            or not (0 < self.embedding_p_value < 1)
        ):
            problems.append(f"drift.embedding_p_value must be in (0, 1) (got {self.embedding_p_value!r})")
        for name, low in (("embedding_examples", 10), ("min_examples", 10)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"drift.{name} must be an integer >= {low} (got {value!r})")
        return problems
