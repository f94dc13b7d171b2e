"""The backbone registry: every pretrained backbone Graft offers, as data.

Adding a backbone is one `Backbone(...)` entry in `_REGISTRY`; preprocessing, model building,
validation and `graft backbones` all read from here.
"""
from __future__ import annotations

import difflib
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Optional

# How pixels in [0, 255] become the backbone's input (names as in keras.applications):
#   caffe: RGB->BGR, minus the ImageNet channel means; tf: scaled to [-1, 1];
#   torch: [0, 1], then ImageNet mean/std; none: the model rescales inside; unit: [0, 1] (TF Hub).
PREPROCESS_MODES = ("caffe", "tf", "torch", "none", "unit")


@dataclass(frozen=True)
class Backbone:
    name: str
    keras_class: str  # attribute of keras.applications that builds it
    family: str  # keras.applications sub-module whose preprocess_input matches `preprocess`
    preprocess: str
    default_size: int
    min_size: int = 32
    params: int = 0  # parameters without the classification top (include_top=False)
    fixed_size: bool = False  # True where only default_size is accepted (NASNet with weights)

    def check_size(self, size: int) -> Optional[str]:
        """Why `size` cannot be this backbone's input size, or None when it can."""
        if size < self.min_size:
            return f"{self.name} needs images of at least {self.min_size} px (got {size})"
        if self.fixed_size and size != self.default_size:
            return f"{self.name} takes only {self.default_size} px images (got {size})"
        return None


_REGISTRY = {
    b.name: b
    for b in [
        Backbone("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf", 224, 32, 2_257_984),
        Backbone("resnet50", "ResNet50", "resnet", "caffe", 224, 32, 23_587_712),
        Backbone("efficientnet_b0", "EfficientNetB0", "efficientnet", "none", 224, 32, 4_049_571),
    ]
}


class UnknownBackboneError(ValueError):
    pass


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Backbone:
    """The registry entry for `name`; an unknown name names the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}.{hint} Known: {', '.join(names())} "
            "(see `graft backbones`)."
        ) from None


class WeightsUnavailableError(RuntimeError):
    pass


def build(backbone: Backbone, image_size: int, weights: str, **kwargs):
    """The Keras backbone without its top, for `image_size` RGB input.

    `weights` is 'imagenet', 'none', or a path to a Keras weights file for this architecture.
    ImageNet weights come from the Keras download cache (~/.keras/models); where they are not
    cached and cannot be downloaded, this fails at once with a message saying what to do.
    """
    import tf_keras as keras

    constructor = getattr(keras.applications, backbone.keras_class)
    weights_arg = None if weights in (None, "none") else weights
    if weights_arg not in (None, "imagenet") and not os.path.exists(weights_arg):
        raise WeightsUnavailableError(f"weights file not found: {weights_arg}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # an offline download must fail in seconds, not minutes
    try:
        return constructor(
            include_top=False,
            weights=weights_arg,
            input_shape=(image_size, image_size, 3),
            **kwargs,
        )
    except Exception as err:  # keras raises bare Exception for download failures
        if weights_arg != "imagenet" or "URL fetch failure" not in str(err):
            if weights_arg not in (None, "imagenet"):
                raise WeightsUnavailableError(
                    f"cannot load weights file {weights_arg} into {backbone.name}: {err}"
                ) from err
            raise
        found = re.search(r"https?://\S+?\.h5", str(err))
        url = found.group(0) if found else "the Keras download site"
        filename = url.rsplit("/", 1)[-1] if found else "<weights file>.h5"
        cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "models")
        raise WeightsUnavailableError(
            f"cannot download ImageNet weights for {backbone.name} ({url}): no network?\n"
            f"  Either pass a local Keras weights file: --weights /path/to/{filename}\n"
            f"  or place that file in the Keras cache as {os.path.join(cache, filename)} "
            "(for air-gapped clusters: bake it into the image at that path)."
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
