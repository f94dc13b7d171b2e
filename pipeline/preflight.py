"""Checks that need the data or the weights but not TFX: structural problems fail in seconds,
with exit code 2, before any heavy work."""
from __future__ import annotations

import os

from components import backbones, ingest
from components.config import ConfigError, GraftConfig


def check_data_dir(data_dir: str) -> None:
    roots = ingest.detect_split_roots(data_dir) or [""]
    classes = set()
    for root in roots:
        listing = ingest.list_split(data_dir, root)
        where = os.path.join(data_dir, root) if root else data_dir
        if not listing.files:
            raise ConfigError(f"{where}: no images found; expected one sub-folder per class holding images")
        classes |= set(listing.classes)
    if len(classes) < 2:
        raise ConfigError(f"{data_dir}: found only class {sorted(classes)}; a classifier needs at least 2 class folders")


def check_weights(config: GraftConfig) -> None:
    """ImageNet weights must be in the Keras cache or downloadable; a weights file must fit."""
    if config.weights == "none":
        return
    import tf_keras  # noqa: F401  (Keras 2, as in the Trainer)

    try:
        backbones.build(config.backbone_entry, config.input_size, config.weights, **config.backbone_kwargs)
    except backbones.WeightsUnavailableError as err:
        raise ConfigError(f"--weights: {err}") from None


def check(config: GraftConfig) -> None:
    if config.data_dir:
        check_data_dir(config.data_dir)
    check_weights(config)
