"""Training-time augmentation: Keras preprocessing layers applied in the Trainer's input
pipeline to training batches only. They are not part of the exported model, so serving never
sees them."""

from __future__ import annotations

from components.contract import ConfigError

# type -> (keras.layers class name, how it takes the factor); Keras is imported only to build.
_LAYERS = {
    "flip": ("RandomFlip", lambda f: {"mode": "horizontal"}),
    "flip_vertical": ("RandomFlip", lambda f: {"mode": "vertical"}),
    "rotation": ("RandomRotation", lambda f: {"factor": f, "fill_mode": "reflect"}),
    "zoom": ("RandomZoom", lambda f: {"height_factor": f, "fill_mode": "reflect"}),
    "translation": ("RandomTranslation", lambda f: {"height_factor": f, "width_factor": f, "fill_mode": "reflect"}),
    "contrast": ("RangeKeepingContrast", lambda f: {"factor": f}),  # not keras' RandomContrast: see its module
}
PRESETS = {
    "none": [],
    "light": [{"type": "flip"}],
    "standard": [
        {"type": "flip"},
        {"type": "rotation", "factor": 0.2},
        {"type": "zoom", "factor": 0.2},
        {"type": "contrast", "factor": 0.1},
    ],
}


def resolve(spec) -> list[dict]:
    """A preset name or a custom list of {type, factor} as a checked list."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"augmentation: unknown preset {spec!r}; known: {', '.join(PRESETS)} or a list")
        return PRESETS[spec]
    if not isinstance(spec, list):
        raise ConfigError("augmentation must be a preset name or a list of {type, factor}")
    for i, item in enumerate(spec):
        if not isinstance(item, dict) or item.get("type") not in _LAYERS:
            raise ConfigError(f"augmentation[{i}]: type must be one of {', '.join(_LAYERS)}")
        if item["type"] not in ("flip", "flip_vertical") and not 0 < float(item.get("factor", 0)) <= 1:
            raise ConfigError(f"augmentation[{i}]: {item['type']} needs a factor in (0, 1]")
    return spec


def build(items: list[dict], seed: int | None = None):
    """A keras.Sequential of resolved augmentation items, or None for no augmentation.
    (Keras is imported here, not above: `resolve` runs in the command line's fast checks.)"""
    import tf_keras as keras

    from components.trainer.range_keeping_contrast import RangeKeepingContrast

    layers = []
    for item in items:
        class_name, arguments = _LAYERS[item["type"]]
        layer_class = (
            RangeKeepingContrast if class_name == "RangeKeepingContrast" else getattr(keras.layers, class_name)
        )
        layers.append(layer_class(**arguments(item.get("factor")), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None
