"""Checks that need the data or the weights but not TFX: structural problems fail in seconds,
with exit code 2, before any heavy work."""

from __future__ import annotations

import glob
import os

from components.backbones import registry
from components.contract import CLASS_NAMES_FILE, LABEL_KEY
from components.example_gen import image_ingest, text_ingest
from components.serving import serving_dir
from pipeline.config import ConfigError, GraftConfig


def check_data_dir(data_dir: str, min_per_class: int = 1) -> list[str]:
    """The class names (sorted folder names, as ImageExampleGen numbers them), after checking
    the layout: class folders with files, in every split, and enough files per class."""
    roots = image_ingest.detect_split_roots(data_dir) or [""]
    classes, counts = set(), {}
    for root in roots:
        listing = image_ingest.list_split(data_dir, root)
        where = os.path.join(data_dir, root) if root else data_dir
        if not listing.files:
            raise ConfigError(
                f"{where}: no images found; expected one sub-folder per class holding images"
                + (" (this split is empty)" if root else "")
            )
        classes |= set(listing.classes)
        for _, name in listing.files:
            counts[name] = counts.get(name, 0) + 1
    if len(classes) < 2:
        raise ConfigError(
            f"{data_dir}: found only class {sorted(classes)}; a classifier needs at least 2 class folders"
        )
    short = sorted(f"{name} ({n})" for name, n in counts.items() if n < min_per_class)
    if short:
        raise ConfigError(
            f"{data_dir}: classes with fewer than min_images_per_class={min_per_class} files: " + ", ".join(short)
        )
    return sorted(classes)


def tfrecord_class_names(tfrecord_dir: str) -> list[str]:
    """Labels 0..max found in the records, named by their number (when class_names is unset)."""
    import tensorflow as tf  # here, not above: the checks before it must answer in seconds

    from components.files import tfrecords

    files = sorted(f for f in glob.glob(os.path.join(tfrecord_dir, "*")) if os.path.isfile(f))
    if not files:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: no files")
    highest = -1
    try:
        for record in tfrecords(files):
            label = tf.train.Example.FromString(record.numpy()).features.feature[LABEL_KEY].int64_list.value
            highest = max([highest, *label])
    except tf.errors.DataLossError as err:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: not TFRecord files of tf.Example ({err.message})") from None
    if highest < 1:
        raise ConfigError(f"--tfrecord-dir {tfrecord_dir}: found labels up to {highest}; need at least 2 classes")
    return [str(i) for i in range(highest + 1)]


def _h5_weighted_layers(path: str):
    """How many layers hold weights in a Keras .h5 weights file (None: not such a file)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
            return sum(1 for n in names if len(f[n].attrs["weight_names"]))
    except (OSError, KeyError, ImportError):
        return None


def check_weights(config: GraftConfig) -> None:
    """ImageNet weights must be in the Keras cache or downloadable; a weights file must fit; a
    TF Hub handle (and a BERT preprocessing model) must load."""
    if config.weights == "none":
        return
    entry = config.backbone_entry
    if entry.kind == "text":
        if config.text_preprocessor:
            try:
                registry.load_hub_model(config.text_preprocessor)
            except registry.WeightsUnavailableError as err:
                raise ConfigError(f"--text-preprocessor: {err}") from None
        try:
            encoder = registry.build_text_encoder(entry, config.weights, config.max_tokens, config.vocab_size, 1)
        except registry.WeightsUnavailableError as err:
            raise ConfigError(f"--weights: {err}") from None
        if entry.name == registry.HUB_BERT.name:
            check_bert_stages(config, encoder)
        return
    if os.path.isfile(config.weights) and entry.weighted_layers:
        # A file for another architecture is refused from its header, before TensorFlow loads.
        found = _h5_weighted_layers(config.weights)
        if found is not None and found != entry.weighted_layers:
            raise ConfigError(
                f"--weights {config.weights}: a weights file for another architecture: it holds {found} "
                f"layers with weights, {entry.name} has {entry.weighted_layers}"
            )
    import tf_keras  # noqa: F401  (Keras 2, as in the Trainer)

    try:
        registry.build(config.backbone_entry, config.input_size, config.weights, **config.backbone_kwargs)
    except registry.WeightsUnavailableError as err:
        raise ConfigError(f"--weights: {err}") from None


def check_bert_stages(config: GraftConfig, encoder) -> None:
    """Each stage's `trainable` fits the encoder's transformer blocks (known once it is loaded)."""
    from components.backbones import bert_encoder

    layer = bert_encoder.encoder_layer(encoder)
    for stage in config.stage_plan:
        if stage.trainable != "none":
            try:
                bert_encoder.first_block_for(layer, stage)
            except ValueError as err:
                raise ConfigError(f"stages: {err}") from None


def check_serving_classes(config: GraftConfig) -> None:
    """A new model whose classes differ from the serving model's would break its clients, and
    cannot continue from it (init_from serving)."""
    current = serving_dir.newest(config.serving_dir)
    serving = serving_dir.read_extra_json(current, CLASS_NAMES_FILE) if current else None
    if serving is None:
        return
    if list(serving) != list(config.class_names):
        what_to_do = (
            ". init_from: serving continues that model, which needs its classes; set init_from: backbone "
            "to train a new model (and allow_class_change: true to replace the served one)."
            if config.init_from == "serving"
            else ". Its clients would get different class indices; use a new --serving-dir, "
            "or set allow_class_change: true in the config if this is intended."
        )
        added = sorted(set(config.class_names) - set(serving))
        removed = sorted(set(serving) - set(config.class_names))
        raise ConfigError(
            f"the classes differ from those of the model now serving ({current}): "
            f"added {added or 'none'}, removed {removed or 'none'}"
            + ("" if added or removed else " (same names, different order)")
            + what_to_do
        )


def check_blocks(config: GraftConfig) -> None:
    """Stages that unfreeze 'from:<block>' name blocks this backbone has (checked now, not
    when the Trainer reaches that stage)."""
    wanted = [s.from_block for s in config.stage_plan if s.from_block]
    if not wanted or config.backbone_entry.is_hub or config.kind == "text":
        return
    entry = config.backbone_entry
    names = registry.blocks(entry, registry.build(entry, config.input_size, "none", **config.backbone_kwargs))
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ConfigError(
            f"stages: {config.backbone} has no block(s) {', '.join(missing)}; its blocks: {', '.join(names)}"
        )


def newest_span_path(data: str) -> str:
    """DIR/span-<N> with the highest N: what a run with spans reads."""
    span = image_ingest.newest_span(data)
    if not span:
        raise ConfigError(f"{data}: spans is set but there is no span-<N> folder")
    return os.path.join(data, span)


def text_class_names(config: GraftConfig) -> list[str]:
    """The labels of the accepted texts (sorted, as TextExampleGen numbers them), after checking
    there are at least 2 and enough of each."""
    path = newest_span_path(config.text_data) if config.spans else config.text_data
    try:
        listing = text_ingest.read_text_input(path, config.text_rules)
    except text_ingest.TextInputError as err:
        raise ConfigError(f"--text-data: {err}") from None
    counts = {}
    for record in listing.accepted:
        counts[record.label] = counts.get(record.label, 0) + 1
    if len(counts) < 2:
        raise ConfigError(
            f"--text-data {path}: found label(s) {sorted(counts)} among {len(listing.accepted)} accepted "
            f"texts; a classifier needs at least 2 (label_column: {config.label_column})"
        )
    short = sorted(f"{name} ({n})" for name, n in counts.items() if n < config.min_images_per_class)
    if short:
        raise ConfigError(
            f"--text-data {path}: labels with fewer than min_images_per_class="
            f"{config.min_images_per_class} texts: " + ", ".join(short)
        )
    return sorted(counts)


def resolve_class_names(config: GraftConfig) -> None:
    """Checks the data layout (the newest span's, with spans) and fills in config.class_names:
    from the class folders or text labels, else from the TFRecords' labels when the config names none."""
    if config.text_data:
        found = text_class_names(config)
        if config.class_names and list(config.class_names) != found:
            raise ConfigError(f"class_names {config.class_names} differ from the labels in the text data {found}")
        config.class_names = found
    elif config.data_dir:
        data_dir = newest_span_path(config.data_dir) if config.spans else config.data_dir
        found = check_data_dir(data_dir, config.min_images_per_class)
        if config.class_names and list(config.class_names) != found:
            raise ConfigError(f"class_names {config.class_names} differ from the class folders {found}")
        config.class_names = found
    elif not config.class_names:
        config.class_names = tfrecord_class_names(config.tfrecord_dir)


def check_golden_classes(config: GraftConfig) -> None:
    """A local image golden set (eval_data) holds only training classes: refused before any
    component runs (its ExampleGen checks again, for object stores and texts)."""
    path = config.eval_data
    if not path or config.text_data or "://" in path or not os.path.isdir(path):
        return
    unknown = sorted(
        name
        for name in os.listdir(path)
        if os.path.isdir(os.path.join(path, name)) and not name.startswith(".") and name not in config.class_names
    )
    if unknown:
        raise ConfigError(
            f"--eval-data {path}: class folder(s) {', '.join(unknown)} not among the classes the model is trained on "
            f"({', '.join(config.class_names)}); a golden set can only hold those"
        )


def check(config: GraftConfig) -> None:
    """Validates what needs the data or weights, and fills in config.class_names."""
    resolve_class_names(config)
    check_golden_classes(config)
    if not config.allow_class_change or config.init_from == "serving":
        check_serving_classes(config)
    check_blocks(config)
    check_weights(config)
