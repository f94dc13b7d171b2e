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

from components.contract import CLASS_NAMES_FILE
from components.serving import serving_dir
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


def load_serving_weights(model, version: str, class_names: list) -> None:
    """`version`'s weights into `model` (built for the same config), every variable matched."""
    served_classes = serving_dir.read_extra_json(version, CLASS_NAMES_FILE)
    if served_classes != list(class_names):
        raise WarmStartError(
            f"init_from serving: the model serving at {version} predicts {served_classes}, this data has "
            f"{list(class_names)}: a model can only continue on the same classes in the same order. "
            "Set init_from: backbone to train a new model for these classes."
        )
    try:
        load_weights_only(model, os.path.join(version, "variables", "variables"))
    except AssertionError as error:
        raise WarmStartError(
            f"init_from serving: the model serving at {version} was built with another backbone or head "
            f"than this config's ({error}); set init_from: backbone, or the backbone it was trained with"
        ) from None
    log.info("init_from serving: starting from the weights of serving version %s", os.path.basename(version))
