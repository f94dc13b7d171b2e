"""ExampleGen executor for labelled texts: one tf.Example per accepted row or .txt file.

The image executor's machinery (FileBasedExampleGen: input fingerprints for caching, hash
splits, the per-split accepted counts) with text's reading rules (text_ingest). Each example
holds the UTF-8 `text`, the integer `label` (index in sorted label names), `label_name` and
`path`: the text's hash, which the train/eval split is keyed on (a text keeps its split when
rows are added or reordered). Rows and files that are not labelled texts are quarantined with
their reason or skipped by a rule; the accounting goes where the image executor puts it.

The input is read once, in this process, and handed to Beam: fine for the tables text
classifiers train on (a million short rows is a few hundred MB); shard bigger corpora into a
folder of tables.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.contract import (
    DATA_LISTING_PROPERTY,
    INGEST_DIR,
    LABEL_KEY,
    LABEL_NAME_KEY,
    PATH_KEY,
    TEXT_KEY,
    TEXT_LENGTH_KEY,
)
from components.example_gen import image_executor, split_writer, text_ingest
from components.example_gen.ingest_report import IngestError, accepted_counts, make_report


def text_path(input_base: str, pattern: str) -> str:
    """What the split pattern names: a table file ('reviews.csv') or, for '*' patterns, the
    folder the '*' is in (the input folder, or a resolved span's 'span-3/*')."""
    return (
        os.path.join(input_base, os.path.dirname(pattern)).rstrip("/")
        if "*" in pattern
        else os.path.join(input_base, pattern)
    )


def _example(record: dict) -> tf.train.Example:
    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                TEXT_KEY: feature(record["text"].encode("utf-8")),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[record["label"]])),
                LABEL_NAME_KEY: feature(record["label_name"].encode("utf-8")),
                PATH_KEY: feature(record["key"].encode("utf-8")),
                # In words: StatisticsGen's statistics and the drift checks compare it across spans.
                TEXT_LENGTH_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[len(record["text"].split())])),
            }
        )
    )


def records_digest(records: list) -> str:
    """A digest of the accepted texts (as the model reads them) and their labels."""
    digest = hashlib.sha256()
    for key, label in sorted((r.split_key, r.label) for r in records):
        digest.update(f"{key}\0{label}\n".encode())
    return digest.hexdigest()[:16]


def drop_golden_texts(listing: text_ingest.TextListing, settings) -> None:
    """Moves the texts that are also in the golden set (as the model reads them) to `skipped`:
    the golden set is never trained on."""
    if not settings.golden_data:
        return
    try:
        golden = text_ingest.read_text_input(settings.golden_data, settings.text_rules)
    except text_ingest.TextInputError as err:
        raise IngestError(f"eval_data: {err}") from None
    where = {record.model_text: record.source for record in golden.accepted}
    kept = []
    for record in listing.accepted:
        if record.model_text in where:
            listing.skipped.append(
                {
                    "path": record.source,
                    "reason": f"also in the golden set as {where[record.model_text]} "
                    f"(eval_data {settings.golden_data}): never trained on",
                }
            )
        else:
            kept.append(record)
    listing.accepted = kept


class Executor(image_executor.Executor):
    """Texts to tf.Examples, with every row accounted for."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        @beam.ptransform_fn
        def TextsToExample(pipeline, exec_properties, split_pattern):
            return (
                pipeline
                | "Records" >> beam.Create(exec_properties[image_executor.STATE_KEY]["records"])
                | "ToExample" >> beam.Map(_example)
            )

        return TextsToExample

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        settings = image_executor.read_settings(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = image_executor.resolve_span(exec_properties, examples)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        path = text_path(exec_properties["input_base"], input_config.splits[0].pattern)
        rules = settings.text_rules
        try:
            listing = text_ingest.read_text_input(path, rules)
        except text_ingest.TextInputError as err:
            raise IngestError(str(err)) from None
        drop_golden_texts(listing, settings)
        # Which text carries which label, for the RetrainGate (as ImageExampleGen records its files):
        # what the golden set drops changes it, though TFX's fingerprint of the table stays the same.
        examples.set_string_custom_property(DATA_LISTING_PROPERTY, records_digest(listing.accepted))
        class_names = listing.classes
        if settings.class_names is not None:  # the golden set: the training labels' ids
            class_names = image_executor.known_classes(path, class_names, settings.class_names)
        if len(class_names) < 2:
            raise IngestError(
                f"{path}: found {len(class_names)} label(s) with texts ({', '.join(class_names) or 'none'}); "
                "a classifier needs at least 2"
            )
        index = {name: i for i, name in enumerate(class_names)}
        ingest_dir = os.path.join(examples.uri, INGEST_DIR)
        tf.io.gfile.makedirs(ingest_dir)
        exec_properties = dict(exec_properties)
        records = [
            {"text": r.text, "label": index[r.label], "label_name": r.label, "key": r.split_key}
            for r in listing.accepted
        ]
        # Written in the order of the texts' hashes, not the table's: tables are often sorted by
        # label, and a Trainer's shuffle buffer smaller than the data would see one label at a time.
        records.sort(key=lambda record: record["key"])
        exec_properties[image_executor.STATE_KEY] = {"ingest_dir": ingest_dir, "records": records}
        logging.info(
            "Ingesting %d texts in %d classes from %s (%d quarantined, %d skipped by rule, %d truncated)",
            len(listing.accepted),
            len(class_names),
            path,
            len(listing.quarantined),
            len(listing.skipped),
            listing.truncated,
        )
        split_writer.generate_and_write(self, output_dict, exec_properties)

        splits = artifact_utils.decode_split_names(examples.split_names)
        report = make_report(accepted_counts(ingest_dir, splits), listing.quarantined, listing.skipped, class_names)
        report["truncated"] = listing.truncated
        image_executor.publish_ingest(examples, class_names, report, settings)
