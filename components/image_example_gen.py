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
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import ingest

CLASS_NAMES_FILE = "class_names.json"
INGEST_DIR = "ingest"
REPORT_FILE = "report.json"
_STATE_KEY = "_graft_ingest"


class IngestError(RuntimeError):
    """The data cannot make a sound training set; the message says what to fix."""


def make_custom_config(settings: dict) -> example_gen_pb2.CustomConfig:
    """Packs plain settings into the CustomConfig proto FileBasedExampleGen carries."""
    struct = struct_pb2.Struct()
    struct.update(settings)
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct)
    return config


def _read_custom_config(exec_properties: Dict[str, Any]) -> dict:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return {}
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, config)
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


def split_root_of(pattern: str) -> str:
    """'train/*/*' -> 'train'; '*/*' -> '': the folder whose sub-folders are the classes."""
    parts = pattern.split("/")
    while parts and "*" in parts[-1]:
        parts.pop()
    return "/".join(parts)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


class _InspectAndConvert(beam.DoFn):
    """Reads one file; emits its tf.Example, or a quarantine record to the side output."""

    QUARANTINE = "quarantined"

    def __init__(self, data_root: str, class_index: dict, max_pixels: int):
        self._data_root = data_root
        self._class_index = class_index
        self._max_pixels = max_pixels

    def process(self, item):
        rel_path, class_name = item
        try:
            with tf.io.gfile.GFile(os.path.join(self._data_root, rel_path), "rb") as f:
                data = f.read()
        except (OSError, tf.errors.OpError) as err:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, {"path": rel_path, "class": class_name, "reason": f"unreadable: {err}"})
            return
        reason = ingest.inspect_image(data, self._max_pixels)
        if reason:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, {"path": rel_path, "class": class_name, "reason": reason})
            return
        yield tf.train.Example(features=tf.train.Features(feature={
            "image": _bytes_feature(data),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[self._class_index[class_name]])),
            "label_name": _bytes_feature(class_name.encode("utf-8")),
            "path": _bytes_feature(rel_path.encode("utf-8")),
        }))


def _label_name(example: tf.train.Example) -> str:
    return example.features.feature["label_name"].bytes_list.value[0].decode("utf-8")


def _write_jsonl(pcoll, path: str, label: str):
    return (pcoll
            | f"ToJson[{label}]" >> beam.Map(json.dumps, ensure_ascii=False, sort_keys=True)
            | f"Write[{label}]" >> beam.io.WriteToText(path, shard_name_template="", num_shards=1))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Image folders to tf.Examples, with every file accounted for."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        @beam.ptransform_fn
        def ImagesToExample(pipeline, exec_properties, split_pattern):
            state = exec_properties[_STATE_KEY]
            split = state["splits"][split_pattern]
            outputs = (
                pipeline
                | "ListFiles" >> beam.Create(split["files"])
                | "Reshuffle" >> beam.Reshuffle()
                | "InspectAndConvert" >> beam.ParDo(
                    _InspectAndConvert(exec_properties["input_base"], state["class_index"], state["max_pixels"])
                ).with_outputs(_InspectAndConvert.QUARANTINE, main="examples")
            )
            _write_jsonl(outputs[_InspectAndConvert.QUARANTINE],
                         os.path.join(state["ingest_dir"], f"quarantine-{split['index']}.jsonl"), "Quarantine")
            return outputs["examples"]

        return ImagesToExample

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        """The base class's splits, plus a count of accepted images per split and class."""
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        ingest_dir = exec_properties[_STATE_KEY]["ingest_dir"]
        for split_name, examples in splits.items():
            counts = (examples
                      | f"LabelName[{split_name}]" >> beam.Map(_label_name)
                      | f"CountPerClass[{split_name}]" >> beam.combiners.Count.PerElement())
            _write_jsonl(counts, os.path.join(ingest_dir, f"accepted-{split_name}.jsonl"), f"Accepted[{split_name}]")
        return splits

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        settings = _read_custom_config(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        data_root = exec_properties["input_base"]

        listings = {}
        for index, split in enumerate(input_config.splits):
            root = split_root_of(split.pattern)
            if not os.path.isdir(os.path.join(data_root, root)):
                raise IngestError(f"split {split.name!r}: folder {os.path.join(data_root, root)} does not exist")
            listings[split.pattern] = (index, split.name, ingest.list_split(data_root, root))
        ingest.drop_duplicates(data_root, [listing for _, _, listing in listings.values()])
        class_names = sorted({c for _, _, listing in listings.values() for c in listing.classes})
        if len(class_names) < 2:
            raise IngestError(
                f"{data_root}: found {len(class_names)} class folder(s) with images "
                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2, one sub-folder per class")

        ingest_dir = os.path.join(examples.uri, INGEST_DIR)
        tf.io.gfile.makedirs(ingest_dir)
        exec_properties = dict(exec_properties)
        exec_properties[_STATE_KEY] = {
            "ingest_dir": ingest_dir,
            "class_index": {name: i for i, name in enumerate(class_names)},
            "max_pixels": int(settings.get("max_image_pixels", 50_000_000)),
            "splits": {pattern: {"index": index, "files": listing.files}
                       for pattern, (index, _, listing) in listings.items()},
        }
        logging.info("Ingesting %d files in %d classes from %s",
                     sum(len(l.files) for _, _, l in listings.values()), len(class_names), data_root)
        super().Do(input_dict, output_dict, exec_properties)

        with tf.io.gfile.GFile(os.path.join(examples.uri, CLASS_NAMES_FILE), "w") as f:
            json.dump(class_names, f, ensure_ascii=False)
        report = build_report(ingest_dir, listings, class_names, artifact_utils.decode_split_names(examples.split_names))
        with tf.io.gfile.GFile(os.path.join(ingest_dir, REPORT_FILE), "w") as f:
            json.dump(report, f, ensure_ascii=False, indent=1, sort_keys=True)
        examples.set_string_custom_property("class_names", json.dumps(class_names, ensure_ascii=False))
        for key in ("total", "accepted", "skipped"):
            examples.set_int_custom_property(f"ingest_{key}", report[key])
        examples.set_int_custom_property("ingest_quarantined", len(report["quarantined"]))
        check_quarantine(report, float(settings.get("max_quarantine_fraction", 0.05)))
        check_counts(report, int(settings.get("min_images_per_class", 1)))


def _read_jsonl(path: str) -> list:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def build_report(ingest_dir: str, listings: dict, class_names: list, split_names: list) -> dict:
    """Files seen = accepted + quarantined + skipped, with per split and class counts."""
    quarantined, skipped = [], []
    for index, _, listing in listings.values():
        quarantined += _read_jsonl(os.path.join(ingest_dir, f"quarantine-{index}.jsonl"))
        skipped += listing.skipped
    accepted = {}
    for split in split_names:
        accepted[split] = {name: count for name, count in _read_jsonl(os.path.join(ingest_dir, f"accepted-{split}.jsonl"))}
    total_accepted = sum(sum(c.values()) for c in accepted.values())
    return {
        "total": total_accepted + len(quarantined) + len(skipped),
        "accepted": total_accepted,
        "accepted_per_split": accepted,
        "quarantined": sorted(quarantined, key=lambda r: r["path"]),
        "skipped": len(skipped),
        "skipped_files": skipped,
        "class_names": class_names,
        "empty_class_folders": sorted({c for _, _, l in listings.values() for c in l.empty_classes}),
    }


def check_counts(report: dict, min_per_class: int) -> None:
    """Every split got images, and every class has at least `min_per_class` accepted images."""
    for split, counts in report["accepted_per_split"].items():
        if not sum(counts.values()):
            raise IngestError(f"split {split!r} received no images; add images (or, for hash splits, raise eval_percent)")
    totals = {}
    for counts in report["accepted_per_split"].values():
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
    short = [f"{name} ({totals.get(name, 0)})" for name in report["class_names"] if totals.get(name, 0) < min_per_class]
    if short:
        raise IngestError(f"classes with fewer than min_images_per_class={min_per_class} accepted images: {', '.join(short)}")


def check_quarantine(report: dict, max_fraction: float) -> None:
    """Stops the run when too much was quarantined, naming the worst folders."""
    candidates = report["accepted"] + len(report["quarantined"])
    if not candidates:
        raise IngestError("no image files found")
    fraction = len(report["quarantined"]) / candidates
    if fraction <= max_fraction:
        return
    per_folder = {}
    for record in report["quarantined"]:
        folder = os.path.dirname(record["path"]) or "."
        per_folder[folder] = per_folder.get(folder, 0) + 1
    worst = sorted(per_folder.items(), key=lambda kv: -kv[1])[:5]
    raise IngestError(
        f"{len(report['quarantined'])} of {candidates} images ({fraction:.1%}) were quarantined, above "
        f"max_quarantine_fraction={max_fraction:.0%}. Worst folders: "
        + ", ".join(f"{folder} ({n})" for folder, n in worst)
        + ". Reasons are listed in the run summary; fix or remove those files, or raise the limit.")
