"""The Tuner's slice of GraftConfig, and the `tuner:` section it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ComponentSettings, ConfigSection
from components.trainer.settings import TrainerSettings


@dataclass(frozen=True)
class TunerSection(ConfigSection):
    """The `tuner:` section. trials 0: no Tuner in the pipeline (the defaults train)."""

    trials: int = 0
    validation_percent: int = 20  # of the training split, scored by each trial (carved even on small data)

    SECTION = "tuner"

    def problems(self) -> list[str]:
        problems = []
        if not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 0:
            problems.append(f"tuner.trials must be an integer >= 0 (got {self.trials!r}; 0: no Tuner)")
        if not isinstance(self.validation_percent, int) or not 5 <= self.validation_percent <= 50:
            problems.append(
                f"tuner.validation_percent must be an integer from 5 to 50 (got {self.validation_percent!r})"
            )
        return problems


@dataclass(frozen=True)
class TunerSettings(ComponentSettings):
    code_version: str
    trials: int
    validation_percent: int
    trainer: TrainerSettings  # what each trial trains, before the trial's values
