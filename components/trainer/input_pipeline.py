"""The Trainer's input: raw tf.Examples -> the Transform graph -> (features, label) batches.

Transform does not materialise decoded images (or token ids), so the graph runs here; the
transformed tensors are cached in memory when they fit.
"""

from __future__ import annotations

import tensorflow as tf
from tfx_bsl.public import tfxio

from components import files
from components.contract import LABEL_KEY


def _files(file_patterns) -> list[str]:
    return [f for p in file_patterns for f in tf.io.gfile.glob(p)]


# A keyed hash, so that the carve is independent of ExampleGen's train/eval hash of the path.
_CARVE_KEY = [0x67726166, 0x74766C64]


def carve(validation_percent: int, validation: bool, feature: str):
    """Which training examples are the validation part: those whose raw `feature` (the encoded
    image or the text) hashes into `validation_percent` of 100 buckets. A property of the
    example, not of its position: the same part whatever the read order (shards are read
    interleaved, one per core), on any node a Trainer resumes on, and in `label_counts`.
    Returns a predicate on a raw example (a dict of features), or None when nothing is carved."""
    if not validation_percent:
        return None

    def keep(raw: dict) -> tf.Tensor:
        return tf.equal(carve_bucket(raw[feature]) < validation_percent, validation)

    return keep


def carve_bucket(raw_feature: tf.Tensor) -> tf.Tensor:
    """The carve's hash bucket (0..99) of one example's raw image or text."""
    return tf.strings.to_hash_bucket_strong(tf.reshape(raw_feature, [-1])[0], 100, _CARVE_KEY)


def take_part(dataset: tf.data.Dataset, keep) -> tf.data.Dataset:
    """The unbatched raw examples of `dataset` that `keep` (a `carve` predicate) selects."""
    return dataset if keep is None else dataset.filter(keep)


def make_dataset(
    file_patterns,
    data_accessor,
    tft_output,
    batch_size: int,
    feature: str,
    example_bytes: int,
    shuffle: bool,
    seed: int,
    count: int,
    augment=None,
    keep=None,
    cache_bytes: int = 0,
    shuffle_bytes: int = 0,
) -> tf.data.Dataset:
    """(`feature`, label) batches of the `count` examples in `file_patterns` that `keep` (a
    `carve` predicate on the raw example) selects, with `augment` (training only) applied to each batch after the
    cache. The part is selected on the raw records, so images outside it are never decoded.
    `example_bytes`: one transformed example's size, for the cache and shuffle bounds."""
    tft_layer = tft_output.transform_features_layer()
    read_batch = max(batch_size, 64)
    dataset = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=read_batch, shuffle=False, num_epochs=1),
        tft_output.raw_metadata.schema,
    )
    if keep is not None:
        dataset = take_part(dataset.unbatch(), keep).batch(read_batch)
    # Not converted by AutoGraph: the layer runs Transform's saved graph, with no Python control
    # flow to convert, and converting Keras' call machinery took ~5 s per dataset.
    transform = tf.autograph.experimental.do_not_convert(
        lambda raw: tft_layer({feature: raw[feature], LABEL_KEY: raw[LABEL_KEY]})
    )
    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda t: (t[feature], t[LABEL_KEY])).unbatch()
    if count * example_bytes <= cache_bytes:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer_size(count, example_bytes, shuffle_bytes), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def shuffle_buffer_size(count: int, image_bytes: int, limit_bytes: int) -> int:
    """Images the shuffle buffer holds: all of them if they fit in `limit_bytes`, else as many as
    fit (at least one): a buffer counted in images grew to 17 GB at 380 px."""
    return max(1, min(count, limit_bytes // image_bytes))


def bucket_label_counts(file_patterns, feature: str) -> dict:
    """{(carve bucket 0..99, label): examples} over the records, in one pass: the counts of the
    training and validation parts for any validation percent (see `split_counts`)."""
    spec = {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64), feature: tf.io.FixedLenFeature([1], tf.string)}
    records = files.tfrecords(_files(file_patterns))
    pairs = records.map(lambda r: tf.io.parse_single_example(r, spec)).map(
        lambda raw: (carve_bucket(raw[feature]), raw[LABEL_KEY][0]), num_parallel_calls=tf.data.AUTOTUNE
    )
    counts = {}
    for bucket, label in pairs.as_numpy_iterator():
        counts[(int(bucket), int(label))] = counts.get((int(bucket), int(label)), 0) + 1
    return counts


def split_counts(bucket_counts: dict, validation_percent: int) -> tuple[dict, dict]:
    """({label: examples} of the training part, the same of the validation part `carve` takes)."""
    train, validation = {}, {}
    for (bucket, label), n in bucket_counts.items():
        part = validation if bucket < validation_percent else train
        part[label] = part.get(label, 0) + n
    return train, validation


def label_counts(file_patterns, feature: str, validation_percent: int = 0) -> tuple[dict, dict]:
    """split_counts of the records in `file_patterns`."""
    return split_counts(bucket_label_counts(file_patterns, feature), validation_percent)


# Below this many training examples, no validation part is carved: model selection on tens of
# examples is noise, and each example carved away is one fewer to learn from. The presets' fixed
# budgets (minimum steps) stand in for early stopping.
SMALL_DATA = 1000


def validation_percent_for(configured, training_examples: int) -> int:
    """The validation part's percent: as configured, or (None: auto) 10 from SMALL_DATA training
    examples up, 0 below."""
    if configured is not None:
        return configured
    return 10 if training_examples >= SMALL_DATA else 0
