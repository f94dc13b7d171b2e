"""The RetrainGate's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.drift.settings import DriftSection
from components.settings import ComponentSettings


@dataclass(frozen=True)
class RetrainGateSettings(ComponentSettings):
    serving_dir: str
    force: bool  # --force: train whatever the serving model was made from
    model_config: dict  # the resolved config without run plumbing (paths, cache, Beam): what makes the model
    model_code: str  # a digest of the code that makes the model (ExampleGen, Transform, Trainer, Tuner)
    # What judges a candidate beyond its training key: the golden set's fingerprint and the
    # Evaluator's and Pusher's code. A refusal is remembered only under the same one; None (a golden
    # set on an object store, whose edits cannot be seen here): a refusal is never taken as final.
    evaluation_key: Optional[str]
    drift: DriftSection  # the checks of new data against the serving model's, before training
    code_version: str  # the gate's and its drift checks' code: a cached decision is not replayed by newer code
