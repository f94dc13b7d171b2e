"""The Tuner's slice of GraftConfig, and the `tuner:` section it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from components.contract import ConfigError
from components.settings import ComponentSettings, unknown_options
from components.trainer.settings import TrainerSettings


@dataclass(frozen=True)
class TunerSection:
    """The `tuner:` section. trials 0: no Tuner in the pipeline (the defaults train)."""

    trials: int = 0
    validation_percent: int = 20  # of the training split, scored by each trial (carved even on small data)

    @classmethod
    def from_section(cls, values: dict) -> TunerSection:
        values = dict(values or {})
        unknown = unknown_options(cls, values, "tuner")
        if unknown:
            raise ConfigError(unknown)
        section = cls(**values)
        problems = []
        if not isinstance(section.trials, int) or isinstance(section.trials, bool) or section.trials < 0:
            problems.append(f"tuner.trials must be an integer >= 0 (got {section.trials!r}; 0: no Tuner)")
        if not isinstance(section.validation_percent, int) or not 5 <= section.validation_percent <= 50:
            problems.append(
                f"tuner.validation_percent must be an integer from 5 to 50 (got {section.validation_percent!r})"
            )
        if problems:
            raise ConfigError("invalid tuner settings:\n  - " + "\n  - ".join(problems))
        return section


@dataclass(frozen=True)
class TunerSettings(ComponentSettings):
    code_version: str
    trials: int
    validation_percent: int
    trainer: TrainerSettings  # what each trial trains, before the trial's values
