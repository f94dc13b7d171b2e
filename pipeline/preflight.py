"""Checks that need the data or the weights but not TFX: structural problems fail in seconds,
with exit code 2, before any heavy work."""
from __future__ import annotations

import os

from components import backbones, ingest
from components.config import ConfigError, GraftConfig


def check_data_dir(data_dir: str) -> list[str]:
    """The class names (sorted folder names, as ImageExampleGen numbers them)."""
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
    return sorted(classes)


def tfrecord_class_names(tfrecord_dir: str) -> list[str]:
    """Labels 0..max found in the records, named by their number (when class_names is unset)."""
    import glob

    import tensorflow as tf

    files = sorted(f for f in glob.glob(os.path.join(tfrecord_dir, "*")) if os.path.isfile(f))
    if not files:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: no files")
    highest = -1
    try:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP" if files[0].endswith(".gz") else ""):
            label = tf.train.Example.FromString(record.numpy()).features.feature["label"].int64_list.value
            highest = max([highest, *label])
    except tf.errors.DataLossError as err:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: not TFRecord files of tf.Example ({err.message})") from None
    if highest < 1:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: found labels up to {highest}; need at least 2 classes")
    return [str(i) for i in range(highest + 1)]


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
    """Validates what needs the data or weights, and fills in config.class_names."""
    if config.data_dir:
        found = check_data_dir(config.data_dir)
        if config.class_names and list(config.class_names) != found:
            raise ConfigError(f"class_names {config.class_names} differ from the class folders {found}")
        config.class_names = found
    elif not config.class_names:
        config.class_names = tfrecord_class_names(config.tfrecord_dir)
    check_weights(config)
