"""Fine-tuning stages: what trains, how long, at which learning rate.

A run is a list of stages. Presets expand to such lists; explicit lists are checked here,
before the pipeline starts, so a wrong stage is a config error, not a crash in epoch 3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from components.config import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    # "none": backbone frozen (head only); "all": everything; an int N: the top N backbone layers.
    trainable: Union[str, int]
    learning_rate: float


def preset(name: str, config) -> list[Stage]:
    head = Stage("head", config.epochs, "none", config.learning_rate)
    if name == "frozen":
        return [head]
    if name == "two_stage":
        return [
            head,
            Stage("fine_tune", config.fine_tune_epochs, config.fine_tune_layers,
                  config.fine_tune_learning_rate),
        ]
    if name == "full":
        return [Stage("full", config.epochs, "all", config.learning_rate)]
    raise ConfigError(f"stages: unknown preset {name!r}; known: frozen, two_stage, full")


def _parse_stage(index: int, spec) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with epochs, trainable, learning_rate")
    unknown = set(spec) - {"name", "epochs", "trainable", "learning_rate"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    epochs = spec.get("epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"{where}.epochs must be a positive integer (got {epochs!r})")
    trainable = spec.get("trainable", "none")
    if not (trainable in ("none", "all") or (isinstance(trainable, int) and trainable > 0)):
        raise ConfigError(f"{where}.trainable must be 'none', 'all' or a positive layer count (got {trainable!r})")
    rate = spec.get("learning_rate", 1e-3)
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise ConfigError(f"{where}.learning_rate must be in (0, 1) (got {rate!r})")
    return Stage(str(spec.get("name", f"stage{index + 1}")), epochs, trainable, float(rate))


def resolve_stages(config) -> list[Stage]:
    """The config's stages as a checked list."""
    if isinstance(config.stages, str):
        stages = preset(config.stages, config)
    elif isinstance(config.stages, list) and config.stages:
        stages = [_parse_stage(i, s) for i, s in enumerate(config.stages)]
    else:
        raise ConfigError("stages must be a preset name or a non-empty list of stages")
    for stage in stages:
        if stage.epochs < 1:
            raise ConfigError(f"stage {stage.name!r}: epochs must be >= 1")
    return stages
