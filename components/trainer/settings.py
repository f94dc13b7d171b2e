"""The Trainer's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.backbones import registry
from components.settings import ComponentSettings
from components.trainer.stages import Stage


@dataclass(frozen=True)
class TrainerSettings(ComponentSettings):
    code_version: str
    backbone: str
    image_size: int
    weights: str  # imagenet | none | an absolute weights file path | a TF Hub handle
    backbone_kwargs: dict
    dropout: float
    stages: tuple[Stage, ...]
    batch_size: int
    train_batchnorm: bool
    batchnorm_momentum: Optional[float]
    augmentation: list  # resolved {type, factor} items
    early_stopping_patience: int
    validation_percent: int
    label_smoothing: float
    class_weights: Optional[str]
    mixed_precision: str
    feature_caching: bool
    feature_cache_mb: int  # frozen-stage features kept in memory up to this; beyond, no caching
    image_cache_mb: int  # decoded images cached in memory up to this
    shuffle_buffer_mb: int  # the training shuffle buffer holds at most this many bytes of images
    discriminative_lr: float
    class_names: Optional[list]
    seed: int

    @property
    def backbone_entry(self) -> registry.Backbone:
        return registry.get(self.backbone)
