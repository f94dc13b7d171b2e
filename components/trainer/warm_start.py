"""`init_from: serving`: training starts from the weights of the model now serving instead of
the backbone's, so a scheduled retrain on a new span continues where the last one stopped.

The served SavedModel is a Keras SavedModel whose checkpoint holds the model's variables under
the same object graph as a freshly built model of the same config (plus the Transform layer,
which is not restored: Transform is rebuilt for the new data). Only a model of the same classes,
in the same order, can continue; anything else is refused with what to do instead.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import tensorflow as tf

from components.contract import CLASS_NAMES_FILE
from components.serving import provenance, serving_dir
from components.trainer.model import load_weights_only

log = logging.getLogger("graft.trainer")


class WarmStartError(ValueError):
    """The model now serving cannot be continued (another set of classes or architecture)."""


def serving_version(settings) -> Optional[str]:
    """The version training starts from (the newest in the serving directory), or None: cold
    start, because init_from is backbone or nothing serves yet (a first run)."""
    if not settings.warm_start_dir:
        return None
    version = serving_dir.newest(settings.warm_start_dir)
    if version is None:
        log.info("init_from serving: nothing serves yet in %s; starting from the backbone", settings.warm_start_dir)
    return version


# The config options that decide which variables a model has, and their shapes (the input
# size does not: fine-tuning a served model at a higher resolution is a warm start too).
ARCHITECTURE_OPTIONS = ("backbone", "backbone_kwargs")


def load_serving_weights(model, version: str, class_names: list, settings) -> None:
    """`version`'s weights into `model` (built for `settings`), every variable matched. The
    served config (its provenance) is compared first, so a change of architecture is named by
    option; a version without provenance is still refused in words, not with TensorFlow's."""
    served_classes = serving_dir.read_extra_json(version, CLASS_NAMES_FILE)
    if served_classes != list(class_names):
        raise WarmStartError(
            f"init_from serving: the model serving at {version} predicts {served_classes}, this data has "
            f"{list(class_names)}: a model can only continue on the same classes in the same order. "
            "Set init_from: backbone to train a new model for these classes."
        )
    served_config = (provenance.read(version) or {}).get("config") or {}
    differing = [
        f"{option}: {served_config[option]!r} there, {getattr(settings, option)!r} here"
        for option in ARCHITECTURE_OPTIONS
        if option in served_config and served_config[option] != getattr(settings, option)
    ]
    if settings.backbone_entry.imagenet_changes_architecture and "weights" in served_config:
        if (served_config["weights"] == "imagenet") != (settings.weights == "imagenet"):  # EfficientNet's rescaling
            differing.append(f"weights: {served_config['weights']!r} there, {settings.weights!r} here")
    if differing:
        raise WarmStartError(
            f"init_from serving: the model serving at {version} has another architecture than this config "
            f"({'; '.join(differing)}); set those options as they were, or init_from: backbone"
        )
    try:
        load_weights_only(model, os.path.join(version, "variables", "variables"))
    except (AssertionError, ValueError, tf.errors.NotFoundError) as error:
        raise WarmStartError(
            f"init_from serving: the weights of the model serving at {version} do not fit this config's model "
            f"(another backbone, backbone_kwargs or head?): {(str(error).splitlines() or [type(error).__name__])[0][:300]}. "
            "Set init_from: backbone, or the options it was trained with"
        ) from None
    log.info("init_from serving: starting from the weights of serving version %s", os.path.basename(version))
