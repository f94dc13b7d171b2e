"""ExampleGen executor for folders of images: one tf.Example per accepted image.

A FileBasedExampleGen executor, so TFX's input patterns (with {SPAN}/{VERSION}), input
fingerprints (caching) and hash splits keep working. Each example holds the encoded `image`
bytes, integer `label` (index in sorted class names), `label_name` and the source `path`
relative to the data root. Files the serving decoder cannot read are quarantined with their
reason; the accounting is written to `<examples>/ingest/report.json` and as artifact
properties, and the class names to `<examples>/class_names.json`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, input_processor, utils
from tfx.components.example_gen import driver as example_gen_driver
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.contract import (
    CLASS_NAMES_FILE,
    DATA_LISTING_PROPERTY,
    IMAGE_BRIGHTNESS_KEY,
    IMAGE_CHANNELS_KEY,
    IMAGE_FORMAT_KEY,
    IMAGE_HEIGHT_KEY,
    IMAGE_KEY,
    IMAGE_WIDTH_KEY,
    INGEST_DIR,
    INGEST_REPORT_FILE,
    LABEL_KEY,
    LABEL_NAME_KEY,
    PATH_KEY,
)
from components.example_gen import image_ingest, split_writer
from components.example_gen.ingest_report import IngestError, build_report, check_counts, check_quarantine
from components.example_gen.settings import ExampleGenSettings

STATE_KEY = "_graft_ingest"


def make_custom_config(settings: ExampleGenSettings) -> example_gen_pb2.CustomConfig:
    """Packs the settings into the CustomConfig proto FileBasedExampleGen carries."""
    struct = struct_pb2.Struct()
    struct.update(settings.to_dict())
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct)
    return config


def read_settings(exec_properties: dict[str, Any]) -> ExampleGenSettings:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return ExampleGenSettings.from_dict(json_format.MessageToDict(struct))


def resolve_span(exec_properties: dict[str, Any], examples: types.Artifact) -> dict[str, Any]:
    """exec_properties with {SPAN}/{VERSION} in the input patterns resolved to the newest span, as
    TFX's ExampleGen driver does, and the examples artifact given its span and version.

    Locally and on Vertex AI the driver has done this before the executor runs. The open-source
    Kubeflow backend does not run the driver hook (`lifecycle.preCacheCheck`: its backend/src/v2
    has no lifecycle handling), so the executor would see the raw pattern; TFX's own input
    processor resolves it here instead."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    processor = input_processor.FileBasedInputProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, None
    )
    if not any("{SPAN}" in s.pattern or "{VERSION}" in s.pattern for s in input_config.splits):
        if utils.FINGERPRINT_PROPERTY_NAME in exec_properties:
            return exec_properties  # the driver ran and fingerprinted the input
        # No driver (open-source KFP): the input's fingerprint, span 0, as the driver records them;
        # the RetrainGate compares them with the serving version's.
        span, version = processor.resolve_span_and_version()  # 0, None: it fingerprints the matched files
        resolved = dict(exec_properties)
        resolved[utils.SPAN_PROPERTY_NAME] = span
        resolved[utils.VERSION_PROPERTY_NAME] = version
        resolved[utils.FINGERPRINT_PROPERTY_NAME] = processor.get_input_fingerprint(span, version)
        example_gen_driver.update_output_artifact(resolved, examples.mlmd_artifact)
        return resolved
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    resolved = dict(exec_properties)
    resolved[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(input_config)
    resolved[utils.SPAN_PROPERTY_NAME] = span
    resolved[utils.VERSION_PROPERTY_NAME] = version
    resolved[utils.FINGERPRINT_PROPERTY_NAME] = processor.get_input_fingerprint(span, version)
    example_gen_driver.update_output_artifact(resolved, examples.mlmd_artifact)
    logging.info("Resolved the input pattern to span %s (no ExampleGen driver ran).", span)
    return resolved


def span_dir_of(pattern: str) -> str:
    """'span-3' for a resolved span pattern ('span-3/*/*', 'span-3/train/*/*'), else ''. Paths
    are hashed into train/eval relative to it, so an image keeps its split in every later span."""
    first = pattern.split("/", 1)[0]
    return first if re.fullmatch(rf"{re.escape(image_ingest.SPAN_PREFIX)}\d+", first) else ""


def split_root_of(pattern: str) -> str:
    """'train/*/*' -> 'train'; '*/*' -> '': the folder whose sub-folders are the classes."""
    parts = pattern.split("/")
    while parts and "*" in parts[-1]:
        parts.pop()
    return "/".join(parts)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def property_features(properties: dict) -> dict:
    """The image's properties as tf.Example features (StatisticsGen's statistics, the drift checks)."""

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return {
        IMAGE_HEIGHT_KEY: ints(properties["height"]),
        IMAGE_WIDTH_KEY: ints(properties["width"]),
        IMAGE_CHANNELS_KEY: ints(properties["channels"]),
        IMAGE_FORMAT_KEY: _bytes_feature(properties["format"].encode("utf-8")),
        IMAGE_BRIGHTNESS_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[properties["brightness"]])),
    }


class _InspectAndConvert(beam.DoFn):
    """Reads one file; emits its tf.Example, or a quarantine record to the side output."""

    QUARANTINE = "quarantined"

    def __init__(self, data_root: str, class_index: dict, max_pixels: int, span_dir: str):
        self._data_root = data_root
        self._class_index = class_index
        self._max_pixels = max_pixels
        self._span_prefix = span_dir + "/" if span_dir else ""

    def process(self, item):
        rel_path, class_name = item
        try:
            with tf.io.gfile.GFile(os.path.join(self._data_root, rel_path), "rb") as f:
                data = f.read()
        except (OSError, tf.errors.OpError) as err:
            yield beam.pvalue.TaggedOutput(
                self.QUARANTINE, {"path": rel_path, "class": class_name, "reason": f"unreadable: {err}"}
            )
            return
        reason, properties = image_ingest.inspect(data, self._max_pixels)
        if reason:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, {"path": rel_path, "class": class_name, "reason": reason})
            return
        yield tf.train.Example(
            features=tf.train.Features(
                feature={
                    IMAGE_KEY: _bytes_feature(data),
                    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[self._class_index[class_name]])),
                    LABEL_NAME_KEY: _bytes_feature(class_name.encode("utf-8")),
                    PATH_KEY: _bytes_feature(rel_path.removeprefix(self._span_prefix).encode("utf-8")),
                    **property_features(properties),
                }
            )
        )


def _label_name(example: tf.train.Example) -> str:
    return example.features.feature[LABEL_NAME_KEY].bytes_list.value[0].decode("utf-8")


def _write_jsonl(pcoll, path: str, label: str):
    return (
        pcoll
        | f"ToJson[{label}]" >> beam.Map(json.dumps, ensure_ascii=False, sort_keys=True)
        | f"Write[{label}]" >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)
    )


def publish_ingest(examples: types.Artifact, class_names: list, report: dict, settings: ExampleGenSettings) -> None:
    """Writes the class names and the ingestion report beside the examples, records the counts
    as artifact properties (ML Metadata), then stops the run if the data cannot train a sound
    model."""
    with tf.io.gfile.GFile(os.path.join(examples.uri, CLASS_NAMES_FILE), "w") as f:
        json.dump(class_names, f, ensure_ascii=False)
    with tf.io.gfile.GFile(os.path.join(examples.uri, INGEST_DIR, INGEST_REPORT_FILE), "w") as f:
        json.dump(report, f, ensure_ascii=False, indent=1, sort_keys=True)
    examples.set_string_custom_property("class_names", json.dumps(class_names, ensure_ascii=False))
    for key in ("total", "accepted", "skipped", "truncated"):
        if key in report:
            examples.set_int_custom_property(f"ingest_{key}", report[key])
    examples.set_int_custom_property("ingest_quarantined", len(report["quarantined"]))
    check_quarantine(report, settings.max_quarantine_fraction)
    # A golden set (class_names given) may be small: the per-class minimum is a training rule.
    check_counts(report, settings.min_images_per_class if settings.class_names is None else 0)


def golden_files(settings: ExampleGenSettings) -> dict:
    """{digest: "eval_data/<path>"} of the golden set's images ({} without one)."""
    if not settings.golden_data:
        return {}
    listing = image_ingest.list_split(settings.golden_data)
    return {
        digest: os.path.join(settings.golden_data, rel_path)
        for digest, rel_path in image_ingest.file_digests(settings.golden_data, listing).items()
    }


def known_classes(data_root: str, found: list, training_classes: list) -> list:
    """The training classes, after checking that the golden set (at `data_root`) has no other."""
    unknown = sorted(set(found) - set(training_classes))
    if unknown:
        raise IngestError(
            f"eval_data {data_root}: {', '.join(repr(c) for c in unknown)} not among the classes the model "
            f"is trained on ({', '.join(training_classes)}); a golden set can only hold those"
        )
    return list(training_classes)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Image folders to tf.Examples, with every file accounted for."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        @beam.ptransform_fn
        def ImagesToExample(pipeline, exec_properties, split_pattern):
            state = exec_properties[STATE_KEY]
            split = state["splits"][split_pattern]
            outputs = (
                pipeline
                | "ListFiles" >> beam.Create(split["files"])
                | "Reshuffle" >> beam.Reshuffle()
                | "InspectAndConvert"
                >> beam.ParDo(
                    _InspectAndConvert(
                        exec_properties["input_base"], state["class_index"], state["max_pixels"], split["span_dir"]
                    )
                ).with_outputs(_InspectAndConvert.QUARANTINE, main="examples")
            )
            _write_jsonl(
                outputs[_InspectAndConvert.QUARANTINE],
                os.path.join(state["ingest_dir"], f"quarantine-{split['index']}.jsonl"),
                "Quarantine",
            )
            return outputs["examples"]

        return ImagesToExample

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        """The base class's splits, plus a count of accepted images per split and class."""
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        ingest_dir = exec_properties[STATE_KEY]["ingest_dir"]
        for split_name, examples in splits.items():
            counts = (
                examples
                | f"LabelName[{split_name}]" >> beam.Map(_label_name)
                | f"CountPerClass[{split_name}]" >> beam.combiners.Count.PerElement()
            )
            _write_jsonl(counts, os.path.join(ingest_dir, f"accepted-{split_name}.jsonl"), f"Accepted[{split_name}]")
        return splits

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        settings = read_settings(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = resolve_span(exec_properties, examples)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        data_root = exec_properties["input_base"]

        listings = {}
        for index, split in enumerate(input_config.splits):
            root = split_root_of(split.pattern)
            if not tf.io.gfile.isdir(os.path.join(data_root, root)):
                raise IngestError(f"split {split.name!r}: folder {os.path.join(data_root, root)} does not exist")
            listings[split.pattern] = (index, split.name, image_ingest.list_split(data_root, root))
        image_ingest.drop_duplicates(
            data_root, [listing for _, _, listing in listings.values()], golden_files(settings)
        )
        # Which file is in which class, for the RetrainGate: TFX's input fingerprint counts files,
        # bytes and modification times, so a relabelling move between class folders leaves it equal.
        examples.set_string_custom_property(
            DATA_LISTING_PROPERTY, image_ingest.listing_digest([listing for _, _, listing in listings.values()])
        )
        class_names = sorted({c for _, _, listing in listings.values() for c in listing.classes})
        if settings.class_names is not None:  # the golden set: the training classes' label ids
            class_names = known_classes(data_root, class_names, settings.class_names)
        if len(class_names) < 2:
            raise IngestError(
                f"{data_root}: found {len(class_names)} class folder(s) with images "
                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2, one sub-folder per class"
            )

        ingest_dir = os.path.join(examples.uri, INGEST_DIR)
        tf.io.gfile.makedirs(ingest_dir)
        exec_properties = dict(exec_properties)
        exec_properties[STATE_KEY] = {
            "ingest_dir": ingest_dir,
            "class_index": {name: i for i, name in enumerate(class_names)},
            "max_pixels": settings.max_image_pixels,
            "splits": {
                pattern: {
                    "index": index,
                    "files": image_ingest.write_order(listing.files),
                    "span_dir": span_dir_of(pattern),
                }
                for pattern, (index, _, listing) in listings.items()
            },
        }
        logging.info(
            "Ingesting %d files in %d classes from %s",
            sum(len(split_listing.files) for _, _, split_listing in listings.values()),
            len(class_names),
            data_root,
        )
        split_writer.generate_and_write(self, output_dict, exec_properties, compressed=False)  # JPEG/PNG bytes

        report = build_report(
            ingest_dir, listings, class_names, artifact_utils.decode_split_names(examples.split_names)
        )
        publish_ingest(examples, class_names, report, settings)
