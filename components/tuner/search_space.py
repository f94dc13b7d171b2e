"""What the Tuner searches and how a trial's values become Trainer settings: one definition,
read by the Tuner's trials and by the Trainer that trains with the best of them.

The space follows the training plan: the first stage's (head's) rate and the budget always;
the fine-tuning rate (a fraction of the head's) when a stage after the first trains the
backbone; the unfreeze depth when there is one such stage of a Keras backbone; the L2 penalty
of text_tfidf's linear head.
"""

from __future__ import annotations

from dataclasses import replace

from components.backbones import registry
from components.trainer.settings import TrainerSettings

HEAD_RATE = "head_learning_rate"
FINE_TUNE_RATE_SCALE = "fine_tune_rate_scale"
FINE_TUNE_LAYERS = "fine_tune_layers"
BUDGET = "budget"  # scales every stage's epochs and minimum steps
HEAD_L2_SCALE = "head_l2_scale"

HEAD_RATES = (1e-4, 3e-2)  # log-uniform
FINE_TUNE_RATE_SCALES = (0.03, 0.1, 0.3)
DEPTHS = ("all", "top:0.5", "top:0.25")
BUDGETS = (0.5, 1.0, 2.0)
HEAD_L2_SCALES = (0.25, 1.0, 4.0)


def _fine_stages(settings: TrainerSettings) -> list[int]:
    """Indices of the stages after the first that train the backbone."""
    return [i for i, s in enumerate(settings.stages) if i and s.trainable != "none"]


def define(settings: TrainerSettings):
    """KerasTuner hyperparameters for this training plan."""
    import keras_tuner  # the Tuner's dependency; the Trainer reads plain values

    hp = keras_tuner.HyperParameters()
    hp.Float(HEAD_RATE, *HEAD_RATES, sampling="log")
    hp.Choice(BUDGET, list(BUDGETS))
    fine = _fine_stages(settings)
    if fine:
        hp.Choice(FINE_TUNE_RATE_SCALE, list(FINE_TUNE_RATE_SCALES))
        if len(fine) == 1 and settings.backbone_entry.kind == "image" and settings.backbone not in registry.HUB_NAMES:
            hp.Choice(FINE_TUNE_LAYERS, list(DEPTHS))
    if settings.backbone == registry.TEXT_TFIDF.name:
        hp.Choice(HEAD_L2_SCALE, list(HEAD_L2_SCALES))
    return hp


def apply(settings: TrainerSettings, values: dict) -> TrainerSettings:
    """`settings` with a trial's values: explicit rates (no range test), scaled budgets, the
    unfreeze depth, the head's L2 (settings already resolved for the data: head_l2 a number)."""
    stages = list(settings.stages)
    budget = float(values.get(BUDGET, 1.0))
    head_rate = float(values[HEAD_RATE])
    fine = _fine_stages(settings)

    def nominal(stage) -> float:  # a fine stage's rate relative to the others, as configured
        return stage.learning_rate if stage.learning_rate is not None else stage.rate_scale

    tuned = []
    for index, stage in enumerate(stages):
        if index == 0:
            rate = head_rate
        elif index in fine and FINE_TUNE_RATE_SCALE in values:
            rate = head_rate * float(values[FINE_TUNE_RATE_SCALE]) * nominal(stage) / nominal(stages[fine[0]])
        elif stage.learning_rate is None:
            rate = head_rate * stage.rate_scale
        else:  # an explicit rate keeps its ratio to the first stage's explicit one
            rate = head_rate * (stage.learning_rate / stages[0].learning_rate if stages[0].learning_rate else 1.0)
        one_fine = fine == [index]  # a depth is searched for a plan with one fine-tuning stage
        trainable = values.get(FINE_TUNE_LAYERS, stage.trainable) if one_fine else stage.trainable
        tuned.append(
            replace(
                stage,
                learning_rate=rate,
                rate_scale=1.0,
                trainable=trainable,
                epochs=max(1, round(stage.epochs * budget)),
                min_steps=round(stage.min_steps * budget),
            )
        )
    head_l2 = settings.head_l2
    if HEAD_L2_SCALE in values and head_l2:
        head_l2 = head_l2 * float(values[HEAD_L2_SCALE])
    return replace(settings, stages=tuple(tuned), head_l2=head_l2)


def best_values(hyperparameters) -> dict:
    """The values in a Tuner's best_hyperparameters (as TFX hands them to the Trainer), or {}."""
    return dict((hyperparameters or {}).get("values", {}))


def describe(values: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(values.items()))
