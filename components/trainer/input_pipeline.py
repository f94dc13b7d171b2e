"""The Trainer's input: raw tf.Examples -> the Transform graph -> (features, label) batches.

Transform does not materialise decoded images (or token ids), so the graph runs here; the
transformed tensors are cached in memory when they fit.
"""

from __future__ import annotations

import tensorflow as tf
from tfx_bsl.public import tfxio

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
        bucket = tf.strings.to_hash_bucket_strong(tf.reshape(raw[feature], [-1])[0], 100, _CARVE_KEY)
        return tf.equal(bucket < validation_percent, validation)

    return keep


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
    dataset = dataset.map(
        lambda raw: tft_layer({feature: raw[feature], LABEL_KEY: raw[LABEL_KEY]}),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
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


def label_counts(file_patterns, feature: str, validation_percent: int = 0) -> tuple[dict, dict]:
    """({label: examples} of the training part, the same of the validation part `carve` takes),
    in one pass over the records."""
    spec = {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64), feature: tf.io.FixedLenFeature([1], tf.string)}
    records = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")
    in_validation = carve(validation_percent, True, feature) or (lambda raw: tf.constant(False))
    parts = records.map(lambda r: tf.io.parse_single_example(r, spec)).map(
        lambda raw: (raw[LABEL_KEY][0], in_validation(raw)), num_parallel_calls=tf.data.AUTOTUNE
    )
    train, validation = {}, {}
    for label, validating in parts.as_numpy_iterator():
        counts = validation if validating else train
        counts[int(label)] = counts.get(int(label), 0) + 1
    return train, validation
