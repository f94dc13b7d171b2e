"""The RetrainGate's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ComponentSettings


@dataclass(frozen=True)
class RetrainGateSettings(ComponentSettings):
    serving_dir: str
    force: bool  # --force: train whatever the serving model was made from
    model_config: dict  # the resolved config without run plumbing (paths, cache, Beam): what makes the model
    model_code: str  # a digest of the code that makes the model (ExampleGen, Transform, Trainer, Tuner)
