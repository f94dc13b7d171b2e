"""Fine-tuning stages: what trains, how long, with which optimizer and learning-rate schedule.

A run is a list of stages. Presets expand to such lists; explicit lists are checked here,
before the pipeline starts, so a wrong stage is a config error, not a crash in epoch 3.

`trainable` says what of the backbone trains (the new head always does):
  "none" (frozen), "all", an int N (the top N layers), "top:0.25" (the top quarter of the
  layers), or "from:<block>" (that registry block and everything above it).
`schedule` is {"type": constant | exponential | cosine | one_cycle, ...}: see schedules.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    learning_rate: Optional[float]  # None: the range test's rate (the first stage that needs it runs it) x rate_scale
    optimizer: str = "adam"
    schedule: dict = field(default_factory=lambda: {"type": "constant"})
    rate_scale: float = 1.0
    min_steps: int = 0  # at least this many optimizer steps: more epochs on small data

    def __hash__(self):
        return hash((self.name, self.epochs, str(self.trainable), self.learning_rate, self.rate_scale, self.min_steps))

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


# Fine-tuning at a tenth of the head's rate: measured on a pretrained slim MobileNetV2 moved to
# new digits, a tenth beat a thirtieth at 20 and at 100 images per class (see the README).
FINE_TUNE_RATE_SCALE = 0.1
# The most a fine-tuning stage takes from the range test (its fraction of the head's rate): a
# linear head tolerates the ~0.05 the range test can pick, a tenth of it does not suit a
# pretrained backbone under Adam (measured: 0.005 took the transfer test's validation accuracy
# from 0.987 to 0.38 within two epochs; it ended at 0.84). An explicit rate is never capped.
MAX_DERIVED_FINE_TUNE_RATE = 1e-3
_WARMUP_COSINE = {"type": "cosine", "warmup_epochs": 1}
DEFAULT_MIN_HEAD_STEPS = 300  # small data: 5 epochs of 3 batches are too few for a head
# text_tfidf's head is the whole model, a logistic regression on features always cached: a
# convex problem: trained to its optimum, every seed gives nearly the same model, so a retrain
# on the same data is not promoted on noise. Its rate decays to zero over at least this many
# steps (milliseconds each on cached features). Measured on the review sentences (`make
# bench-promotion SAMPLE=text`, 11 seeds): eval accuracy 0.6958-0.7352 with 5 epochs at a
# constant rate, 0.7243-0.7374 with 3,000 steps of decay.
CONVERGED_HEAD_MIN_STEPS = 3000


def preset(name: str, config) -> list[Stage]:
    """The named recipe as stages. Rates left unset (None) come from the range test at the first
    stage (the fine-tuning stages at a fraction of it); every stage runs at least its minimum
    number of optimizer steps, so small data gets more epochs."""
    min_head = DEFAULT_MIN_HEAD_STEPS if config.min_head_steps is None else config.min_head_steps
    head = Stage("head", config.epochs, "none", config.learning_rate, min_steps=min_head)
    fine_rate = config.fine_tune_rate

    def fine(stage_name: str, trainable, scale: float = FINE_TUNE_RATE_SCALE, schedule=_WARMUP_COSINE) -> Stage:
        # Warmup, then cosine decay: large first steps on a pretrained backbone wreck its weights.
        rate = None if fine_rate is None else fine_rate * scale / FINE_TUNE_RATE_SCALE
        return Stage(
            stage_name,
            config.fine_tune_epochs,
            trainable,
            rate,
            schedule=dict(schedule),
            rate_scale=scale if rate is None else 1.0,
            min_steps=config.min_fine_tune_steps,
        )

    if name == "frozen" and config.backbone == registry.TEXT_TFIDF.name:
        converged = CONVERGED_HEAD_MIN_STEPS if config.min_head_steps is None else config.min_head_steps
        return [replace(head, schedule={"type": "cosine"}, min_steps=converged)]
    if name == "frozen":
        return [head]
    if name == "two_stage":
        # A TF Hub model (one layer) and a sentence encoder train whole; a Keras backbone its top
        # fine_tune_layers (default: all of it).
        hub = config.kind == "text" or config.backbone in registry.HUB_NAMES
        return [head, fine("fine_tune", "all" if hub else config.fine_tune_layers)]
    if name == "progressive":
        # Gradual unfreezing: each stage opens more of the backbone at a lower learning rate.
        return [
            head,
            fine("top_quarter", "top:0.25", schedule={"type": "constant"}),
            fine("top_half", "top:0.5", FINE_TUNE_RATE_SCALE / 3, schedule={"type": "constant"}),
        ]
    if name == "full":
        return [Stage("full", config.epochs, "all", config.learning_rate, min_steps=min_head)]
    if name == "scratch":
        # A randomly initialised backbone has no features worth freezing: everything trains.
        return [
            Stage(
                "scratch",
                config.epochs + config.fine_tune_epochs,
                "all",
                config.scratch_learning_rate,
                min_steps=min_head,
            )
        ]
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
    unknown = set(spec) - {"name", "epochs", "trainable", "learning_rate", "optimizer", "schedule", "min_steps"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    epochs = spec.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"{where}.epochs must be a positive integer (got {epochs!r})")
    trainable = parse_trainable(spec.get("trainable", "none"), f"{where}.trainable")
    rate = spec.get("learning_rate", 1e-3)
    if rate == AUTO:
        rate = None  # the range test's
    elif not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise ConfigError(f"{where}.learning_rate must be in (0, 1) or auto (got {rate!r})")
    min_steps = spec.get("min_steps", 0)
    if not isinstance(min_steps, int) or isinstance(min_steps, bool) or min_steps < 0:
        raise ConfigError(f"{where}.min_steps must be an integer >= 0 (got {min_steps!r})")
    optimizer = spec.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"{where}.optimizer must be one of {', '.join(OPTIMIZERS)} (got {optimizer!r})")
    return Stage(
        str(spec.get("name", f"stage{index + 1}")),
        epochs,
        trainable,
        None if rate is None else float(rate),
        optimizer,
        parse_schedule(spec.get("schedule"), f"{where}.schedule"),
        min_steps=min_steps,
    )


def auto_preset(config) -> str:
    """two_stage with pretrained weights; scratch without (a random backbone's features are not
    worth freezing); frozen for text_tfidf, whose TF-IDF vector has nothing below the head to train."""
    if config.backbone == registry.TEXT_TFIDF.name:
        return "frozen"
    return "scratch" if config.weights == "none" else "two_stage"


def resolve_stages(config) -> list[Stage]:
    """The config's stages as a checked list."""
    if config.stages == AUTO:
        stages = preset(auto_preset(config), config)
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
