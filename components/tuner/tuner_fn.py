"""The Tuner's tuner_fn: KerasTuner's random search whose trials are Graft's own training
stages (feature caching, the range test's absence, budgets), scored on the validation carve."""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from dataclasses import replace

import keras_tuner
import numpy as np
import tensorflow_text  # noqa: F401  (registers the text ops a text model's graph holds)
import tf_keras as keras
from tfx.components.tuner.component import TunerFnResult

from components.contract import ConfigError
from components.trainer import devices
from components.trainer.run_fn import Prepared, fit, prepare, with_values
from components.tuner import search_space
from components.tuner.settings import TunerSettings

log = logging.getLogger("graft.tuner")
OBJECTIVE = "val_accuracy"


def validation_accuracy(model, dataset) -> float:
    right = total = 0
    for features, labels in dataset:
        predicted = np.argmax(model(features, training=False), axis=-1)
        right += int(np.sum(predicted == labels.numpy().reshape(-1)))
        total += len(predicted)
    return right / max(1, total)


class StageTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Each trial trains the stages with its values from where the Trainer starts (the backbone's
    weights, or with init_from serving the served model's) and scores the validation carve; the
    model is not kept (the Trainer retrains with the best values)."""

    def __init__(self, prepared: Prepared, trials: int, **kwargs):
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective(OBJECTIVE, "max"),
            max_trials=trials,
            hyperparameters=search_space.define(prepared.options.settings),
            seed=prepared.options.settings.seed,
        )
        super().__init__(oracle, **kwargs)
        self.prepared = prepared

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        started = time.time()
        log.info("trial %s: %s", trial.trial_id, search_space.describe(values))
        keras.backend.clear_session()  # the previous trial's model and graphs, freed
        gc.collect()
        try:
            model, _ = fit(with_values(self.prepared, values))
            accuracy = validation_accuracy(model, self.prepared.validation_ds)
        except Exception as e:  # KerasTuner would record it and go on; a Graft error stops the search
            raise keras_tuner.errors.FatalError(f"Tuner trial {trial.trial_id} ({values}) failed: {e}") from e
        log.info("trial %s: validation accuracy %.4f in %.1fs", trial.trial_id, accuracy, time.time() - started)
        return {OBJECTIVE: accuracy}


def tuner_fn(fn_args) -> TunerFnResult:
    settings = TunerSettings.from_dict(fn_args.custom_config)
    devices.check(devices.expected_gpus(), settings.trainer.allow_cpu_fallback)  # before any data is read
    # The search needs a validation part even where the Trainer carves none (small data).
    # No early stopping in a trial: it would pick epochs on the very part that scores the trial,
    # so a larger budget could never score worse, and the Trainer trains the budget it is given.
    trainer = replace(settings.trainer, validation_percent=settings.validation_percent, early_stopping_patience=0)
    prepared = prepare(fn_args, trainer)
    if prepared.validation_ds is None:
        raise ConfigError(
            f"tuner.validation_percent={settings.validation_percent} leaves no training example to score the "
            "trials on: raise it, or run without the Tuner"
        )
    # KerasTuner's own trial files on local disk, not under the pipeline root: TFX writes the best
    # values and the results itself, and an oracle writing to GCS on Vertex hangs (tensorflow/tfx#7775).
    directory = tempfile.mkdtemp(prefix="graft-tuner-")
    tuner = StageTuner(prepared, settings.trials, directory=directory, project_name="graft", overwrite=True)
    return TunerFnResult(tuner=tuner, fit_kwargs={})
