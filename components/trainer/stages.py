"""Fine-tuning stages: what trains, how long, with which optimizer and learning-rate schedule.

A run is a list of stages. Presets expand to such lists; explicit lists are checked here,
before the pipeline starts, so a wrong stage is a config error, not a crash in epoch 3.

`trainable` says what of the backbone trains (the new head always does):
  "none" (frozen), "all", an int N (the top N layers), "top:0.25" (the top quarter of the
  layers), or "from:<block>" (that registry block and everything above it).
`schedule` is {"type": constant | exponential | cosine | one_cycle, ...}: see schedules.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from components.backbones import registry
from components.contract import ConfigError

_TOP, _FROM = "top:", "from:"
PRESETS = ("frozen", "two_stage", "progressive", "full", "scratch")
AUTO = "auto"  # two_stage with pretrained weights, scratch with weights none
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = {
    "constant": set(),
    "exponential": {"decay_steps", "decay_rate"},
    "cosine": {"warmup_epochs", "alpha"},
    "one_cycle": {"pct_start", "div_factor", "final_div_factor"},
}


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    trainable: Union[str, int]
    learning_rate: float
    optimizer: str = "adam"
    schedule: dict = field(default_factory=lambda: {"type": "constant"})

    def __hash__(self):
        return hash((self.name, self.epochs, str(self.trainable), self.learning_rate))

    @property
    def top_fraction(self) -> Optional[float]:
        """f of a "top:<f>" stage, else None."""
        if isinstance(self.trainable, str) and self.trainable.startswith(_TOP):
            return float(self.trainable[len(_TOP) :])
        return None

    @property
    def from_block(self) -> Optional[str]:
        """<block> of a "from:<block>" stage, else None."""
        if isinstance(self.trainable, str) and self.trainable.startswith(_FROM):
            return self.trainable[len(_FROM) :]
        return None

    def first_trainable(self, count: int, block_starts: dict, where: str) -> int:
        """Index of the lowest of `count` units (a backbone's layers, an encoder's transformer
        blocks) that trains in this stage; `block_starts` maps each named block to its first unit.
        "all": 0; N: the top N; "top:f": the top fraction; "from:<block>": that block upward."""
        if self.trainable == "all":
            return 0
        if isinstance(self.trainable, int):
            return max(0, count - self.trainable)
        if self.top_fraction is not None:
            return count - max(1, round(self.top_fraction * count))
        if self.from_block not in block_starts:
            raise ValueError(
                f"trainable {self.trainable!r}: no block {self.from_block!r} in {where}; "
                f"{where}'s blocks are {', '.join(block_starts)}"
            )
        return block_starts[self.from_block]


def preset(name: str, config) -> list[Stage]:
    head = Stage("head", config.epochs, "none", config.head_learning_rate)
    if name == "frozen":
        return [head]
    if name == "two_stage" and (config.kind == "text" or config.backbone in registry.HUB_NAMES):
        # A sentence encoder (or any TF Hub model: one layer, whose parts cannot be unfrozen
        # alone) is fine-tuned whole, at the lower rate reached after a one-epoch warmup (then
        # cosine decay): large first steps would wreck the pretrained weights.
        return [
            head,
            Stage(
                "fine_tune",
                config.fine_tune_epochs,
                "all",
                config.fine_tune_rate,
                schedule={"type": "cosine", "warmup_epochs": 1},
            ),
        ]
    if name == "two_stage":
        return [
            head,
            Stage("fine_tune", config.fine_tune_epochs, config.fine_tune_layers, config.fine_tune_rate),
        ]
    if name == "progressive":
        # Gradual unfreezing: each stage opens more of the backbone at a lower learning rate.
        return [
            head,
            Stage("top_quarter", config.fine_tune_epochs, "top:0.25", config.fine_tune_rate),
            Stage("top_half", config.fine_tune_epochs, "top:0.5", config.fine_tune_rate / 3),
        ]
    if name == "full":
        return [Stage("full", config.epochs, "all", config.head_learning_rate)]
    if name == "scratch":
        # A randomly initialised backbone has no features worth freezing: everything trains.
        return [Stage("scratch", config.epochs + config.fine_tune_epochs, "all", config.head_learning_rate)]
    raise ConfigError(f"stages: unknown preset {name!r}; known: {AUTO}, {', '.join(PRESETS)}")


def parse_trainable(value, where: str = "trainable"):
    """Checks a trainable spec; returns it normalised ("top:<fraction>" as a float)."""
    if value in ("none", "all") or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    if isinstance(value, str) and value.startswith(_TOP):
        try:
            fraction = float(value[len(_TOP) :])
        except ValueError:
            fraction = -1
        if 0 < fraction <= 1:
            return value
    if isinstance(value, str) and value.startswith(_FROM) and len(value) > len(_FROM):
        return value
    raise ConfigError(
        f"{where} must be 'none', 'all', a positive layer count, 'top:<fraction>' or 'from:<block>' (got {value!r})"
    )


def parse_schedule(value, where: str = "schedule") -> dict:
    if value is None:
        return {"type": "constant"}
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type") not in SCHEDULES:
        raise ConfigError(f"{where} must name a type among {', '.join(SCHEDULES)} (got {value!r})")
    unknown = set(value) - {"type"} - SCHEDULES[value["type"]]
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {sorted(unknown)} for {value['type']}; "
            f"known: {sorted(SCHEDULES[value['type']])}"
        )
    for key, number in value.items():
        if key != "type" and (not isinstance(number, (int, float)) or number < 0):
            raise ConfigError(f"{where}.{key} must be a number >= 0 (got {number!r})")
    return dict(value)


def _parse_stage(index: int, spec) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with epochs, trainable, learning_rate")
    unknown = set(spec) - {"name", "epochs", "trainable", "learning_rate", "optimizer", "schedule"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    epochs = spec.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"{where}.epochs must be a positive integer (got {epochs!r})")
    trainable = parse_trainable(spec.get("trainable", "none"), f"{where}.trainable")
    rate = spec.get("learning_rate", 1e-3)
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise ConfigError(f"{where}.learning_rate must be in (0, 1) (got {rate!r})")
    optimizer = spec.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"{where}.optimizer must be one of {', '.join(OPTIMIZERS)} (got {optimizer!r})")
    return Stage(
        str(spec.get("name", f"stage{index + 1}")),
        epochs,
        trainable,
        float(rate),
        optimizer,
        parse_schedule(spec.get("schedule"), f"{where}.schedule"),
    )


def resolve_stages(config) -> list[Stage]:
    """The config's stages as a checked list."""
    if config.stages == AUTO:
        stages = preset("scratch" if config.weights == "none" else "two_stage", config)
    elif isinstance(config.stages, str):
        stages = preset(config.stages, config)
    elif isinstance(config.stages, list) and config.stages:
        stages = [_parse_stage(i, s) for i, s in enumerate(config.stages)]
    else:
        raise ConfigError("stages must be a preset name or a non-empty list of stages")
    for stage in stages:
        if stage.epochs < 1:
            raise ConfigError(f"stage {stage.name!r}: epochs must be >= 1")
    return stages
