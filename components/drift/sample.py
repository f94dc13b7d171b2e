"""The examples a drift check compares: read from an examples artifact's splits, up to a limit.

ExampleGen writes examples in the order of a digest of their path (image_ingest.write_order), not
by class, so the first N records of a split are a fair sample of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components import files
from components.contract import (
    IMAGE_BRIGHTNESS_KEY,
    IMAGE_CHANNELS_KEY,
    IMAGE_FORMAT_KEY,
    IMAGE_HEIGHT_KEY,
    IMAGE_KEY,
    IMAGE_WIDTH_KEY,
    LABEL_KEY,
    LABEL_NAME_KEY,
    TEXT_KEY,
    TEXT_LENGTH_KEY,
)

# The per-example properties the checks compare (ExampleGen writes them), by how they are compared:
# continuous values by their distribution; sizes, channels and formats by the share of each value
# (a histogram of sizes would turn one 225-pixel image among 224s into a different distribution).
NUMERIC_PROPERTIES = (IMAGE_BRIGHTNESS_KEY, TEXT_LENGTH_KEY)
CATEGORICAL_PROPERTIES = (IMAGE_FORMAT_KEY, IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY, IMAGE_CHANNELS_KEY)


@dataclass
class Sample:
    """Some examples of one data set: their properties, texts, content digests, serialized records."""

    values: dict = field(default_factory=dict)  # feature -> [value or None], one per example
    texts: list = field(default_factory=list)
    contents: list = field(default_factory=list)  # a digest of each example's image or text
    records: list = field(default_factory=list)  # serialized, the first few (for the embedding test)

    @property
    def count(self) -> int:
        return len(self.contents)

    def joined(self, other: Sample) -> Sample:
        return Sample(
            values={name: values + other.values[name] for name, values in self.values.items()},
            texts=self.texts + other.texts,
            contents=self.contents + other.contents,
            records=self.records + other.records,
        )


def split_files(examples_uris: str | list, split: str) -> list[str]:
    """The files of `split` in one examples artifact, or in each of a span window's, in order."""
    found = []
    for uri in [examples_uris] if isinstance(examples_uris, str) else examples_uris:
        folder = f"{uri.rstrip('/')}/Split-{split}"
        found += [f"{folder}/{name}" for name in files.listdir(folder)] if files.isdir(folder) else []
    return found


def _value(feature):
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if values else None


def _content(feature) -> str:
    import hashlib

    raw = _value(feature[IMAGE_KEY]) if IMAGE_KEY in feature else _value(feature[TEXT_KEY])
    return hashlib.sha256(raw or b"").hexdigest()


def contents(examples_uri: str | list, split: str) -> frozenset:
    """The content digests of every example of a split (what a model was trained on), nothing kept."""
    import tensorflow as tf

    paths = split_files(examples_uri, split)
    if not paths:
        return frozenset()
    return frozenset(
        _content(tf.train.Example.FromString(r).features.feature) for r in files.tfrecords(paths).as_numpy_iterator()
    )


def read(
    examples_uri: str | list, splits: tuple[str, ...], limit: int, skip: frozenset = frozenset(), keep_records: int = 0
) -> Sample:
    """Up to `limit` examples of `splits` (in that order), leaving out those whose content digest
    is in `skip` (examples a model was trained on, under whatever path they are filed now); the
    serialized records of the first `keep_records` only (images can be megabytes each)."""
    import tensorflow as tf

    sample = Sample(values={name: [] for name in (LABEL_NAME_KEY, *NUMERIC_PROPERTIES, *CATEGORICAL_PROPERTIES)})
    for split in splits:
        paths = split_files(examples_uri, split)
        if not paths:
            continue
        for record in files.tfrecords(paths).as_numpy_iterator():
            if sample.count >= limit:
                return sample
            feature = tf.train.Example.FromString(record).features.feature
            content = _content(feature)
            if content in skip:
                continue
            if len(sample.records) < keep_records:
                sample.records.append(record)
            sample.contents.append(content)
            text = _value(feature[TEXT_KEY]) if TEXT_KEY in feature else None
            sample.texts.append(text.decode("utf-8") if text is not None else None)
            # TFRecords given with --tfrecord-dir may carry the label index alone.
            label = _value(feature[LABEL_NAME_KEY]) if LABEL_NAME_KEY in feature else None
            if label is None and LABEL_KEY in feature:
                label = str(_value(feature[LABEL_KEY])).encode()
            sample.values[LABEL_NAME_KEY].append(label)
            for name in (*NUMERIC_PROPERTIES, *CATEGORICAL_PROPERTIES):
                sample.values[name].append(_value(feature[name]) if name in feature else None)
    return sample
