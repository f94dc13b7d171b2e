"""ImageExampleGen's executor, run for real (TFX executor, Beam in-process) outside a pipeline:
data on a non-local filesystem, the {SPAN} pattern resolved without TFX's driver (as on the
open-source Kubeflow backend), and train/eval splits that stay put across cumulative spans."""

import dataclasses
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.example_gen.image_executor import Executor, make_custom_config
from components.example_gen.settings import ExampleGenSettings
from components.files import tfrecords
from tests.conftest import write_digit_pngs

SETTINGS = ExampleGenSettings(
    code_version="test",
    max_image_pixels=1_000_000,
    max_quarantine_fraction=0.05,
    min_images_per_class=5,
    data_fingerprint="",
    text_rules=None,
    golden_data=None,
    golden_fingerprint="",
    class_names=None,
)


def run_example_gen(
    input_base: str, pattern: str, out_dir, settings: ExampleGenSettings = SETTINGS
) -> tuple[dict, standard_artifacts.Examples]:
    """Runs the executor on `input_base` with one hash-split input `pattern`; returns
    ({split: {path feature: label_name}}, the examples artifact)."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    output = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ],
            partition_feature_name="path",
        )
    )
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)])
        ),
        "output_config": proto_utils.proto_to_json(output),
        "custom_config": proto_utils.proto_to_json(make_custom_config(settings)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=["--direct_running_mode=in_memory"])
    Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    splits = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(str(out_dir), f"Split-{split}", "*"))
        splits[split] = {}
        for record in tfrecords(files):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            splits[split][feature["path"].bytes_list.value[0].decode()] = (
                feature["label_name"].bytes_list.value[0].decode()
            )
    return splits, examples


def _copy_to_ram(local_root: str, ram_root: str) -> None:
    for path in glob.glob(os.path.join(local_root, "*", "*")):
        target = ram_root + path[len(local_root) :]
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(path, target, overwrite=True)


def test_data_on_a_non_local_filesystem(tmp_path):
    """TF's gs:// filesystem cannot be pointed at an emulator (its endpoint is fixed), so the
    object-store code path runs here on TF's ram:// filesystem: no os.path call may touch it."""
    write_digit_pngs(str(tmp_path / "local"), {"a": 0, "b": 1}, 12)
    _copy_to_ram(str(tmp_path / "local"), "ram://graft-data")
    splits, examples = run_example_gen("ram://graft-data", "*/*", tmp_path / "examples")
    accepted = {**splits["train"], **splits["eval"]}
    assert len(accepted) == 24 and set(accepted.values()) == {"a", "b"}
    with open(tmp_path / "examples" / "ingest" / "report.json") as f:
        report = json.load(f)
    assert report["total"] == report["accepted"] == 24 and report["quarantined"] == []
    assert examples.get_int_custom_property("ingest_accepted") == 24


@pytest.mark.slow
def test_span_pattern_resolved_without_the_driver_and_splits_stable_across_spans(tmp_path):
    data = tmp_path / "data"
    first = write_digit_pngs(str(data / "span-1"), {"a": 0, "b": 1}, 20)
    splits_1, examples_1 = run_example_gen(str(data), "span-{SPAN}/*/*", tmp_path / "run1")
    # Cumulative spans: span 2 holds span 1's images plus new ones.
    write_digit_pngs(str(data / "span-2"), {"a": 0, "b": 1}, 40)
    splits_2, examples_2 = run_example_gen(str(data), "span-{SPAN}/*/*", tmp_path / "run2")

    # As TFX's driver would have set them:
    assert [e.get_int_custom_property("span") for e in (examples_1, examples_2)] == [1, 2]
    assert len({**splits_1["train"], **splits_1["eval"]}) == len(first)
    assert len({**splits_2["train"], **splits_2["eval"]}) == 80
    assert splits_1["eval"] and splits_1["train"]
    for split in ("train", "eval"):
        moved = [path for path in splits_1[split] if path not in splits_2[split]]
        assert not moved, f"span-1 {split} images in another split in span 2: {moved}"


def test_missing_split_folder_is_named(tmp_path):
    write_digit_pngs(str(tmp_path / "data" / "train"), {"a": 0, "b": 1}, 6)
    with pytest.raises(Exception, match="folder .*eval does not exist"):
        run_example_gen(str(tmp_path / "data"), "eval/*/*", tmp_path / "out")


def test_a_golden_set_keeps_the_training_label_ids_and_refuses_a_class_the_model_lacks(tmp_path):
    golden = str(tmp_path / "golden")
    write_digit_pngs(golden, {"b": 1}, 12)  # only one of the training classes: fine for a golden set
    training_classes = dataclasses.replace(SETTINGS, class_names=["a", "b"])
    splits, examples = run_example_gen(golden, "*/*", tmp_path / "out", training_classes)
    labels = {
        tf.train.Example.FromString(r.numpy()).features.feature["label"].int64_list.value[0]
        for r in tfrecords(glob.glob(os.path.join(str(tmp_path / "out"), "Split-*", "*")))
    }
    assert labels == {1}  # b's id among the training classes, not 0 as the only class found here
    assert json.loads(examples.get_string_custom_property("class_names")) == ["a", "b"]

    write_digit_pngs(golden, {"c": 7}, 3)
    with pytest.raises(
        Exception, match=r"eval_data .*golden: 'c' not among the classes the model is trained on \(a, b\)"
    ):
        run_example_gen(golden, "*/*", tmp_path / "out2", training_classes)


@pytest.mark.e2e
def test_an_image_edited_in_a_nested_folder_runs_example_gen_again(tmp_path):
    """TFX fingerprints only what the split pattern (*/*) matches; ingestion reads nested
    folders too, so an edit two levels down must still invalidate the cached ExampleGen."""
    from tfx import v1 as tfx
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from pipeline import preflight
    from pipeline.config import load_config
    from pipeline.pipeline import example_gen_component

    data = tmp_path / "data"
    write_digit_pngs(str(data), {"a": 0, "b": 1}, 6)
    nested = write_digit_pngs(str(data / "a" / "more"), {"deeper": 3}, 2)
    metadata = str(tmp_path / "mlmd.db")

    def run_and_count_examples() -> int:
        config = load_config(None, {"data_dir": str(data), "weights": "none", "pipeline_name": "fingerprint"})
        preflight.resolve_class_names(config)
        tfx.orchestration.LocalDagRunner().run(
            tfx.dsl.Pipeline(
                pipeline_name="fingerprint",
                pipeline_root=str(tmp_path / "root"),
                components=[example_gen_component(config)],
                enable_cache=True,
                metadata_connection_config=sqlite_metadata_connection_config(metadata),
                beam_pipeline_args=["--direct_running_mode=in_memory"],
            )
        )
        return len(glob.glob(str(tmp_path / "root" / "ImageExampleGen" / "examples" / "*")))

    assert run_and_count_examples() == 1
    assert run_and_count_examples() == 1  # unchanged: cached
    with open(nested[0], "rb") as f:
        other = f.read()
    with open(nested[1], "wb") as f:  # the same name, new content
        f.write(other)
    assert run_and_count_examples() == 2


_PEAKS_OF_RUNS = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline
from tests.memory import peak_mb, reset_peak
from tests.test_example_gen import run_example_gen

for data in sys.argv[1:]:
    splits, examples = run_example_gen(data, "*/*", data + "-examples")
    after_example_gen = peak_mb()
    # StatisticsGen as the pipeline builds it, on those examples.
    config = load_config(None, {"data_dir": data, "weights": "none"})
    config.class_names = ["a", "b"]
    component = next(c for c in create_pipeline(config).components if c.id == "StatisticsGen")
    inputs = {"examples": [examples]}
    if "schema" in component.inputs:
        schema = standard_artifacts.Schema()
        schema.uri = config.schema_dir
        inputs["schema"] = [schema]
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = data + "-statistics"
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=["--direct_running_mode=in_memory"])
    properties = {k: v for k, v in component.exec_properties.items() if v is not None}
    reset_peak()
    component.executor_spec.executor_class(context).Do(inputs, {"statistics": [statistics]}, properties)
    print(json.dumps({"example_gen_mb": after_example_gen, "statistics_gen_mb": peak_mb(), "train": list(splits["train"].values())}))
"""


def _ingest_peaks(*data_dirs: str) -> list[dict]:
    """Runs ExampleGen, then the pipeline's StatisticsGen, on each folder, each folder in a fresh
    process: the process's peak memory during each, and the train split's labels in the order written."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    peaks = []
    for data in data_dirs:
        result = subprocess.run(
            [sys.executable, "-c", _PEAKS_OF_RUNS, data], capture_output=True, text=True, cwd=repo, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        peaks.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return peaks


def _noise_jpegs(root: str, per_class: int) -> int:
    """Two classes of 128 px JPEGs of noise (~19 KB each, so that the data's bytes dominate); their total size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    total = 0
    for name in ("a", "b"):
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            path = os.path.join(root, name, f"{i:04d}.jpg")
            Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(path, quality=95)
            total += os.path.getsize(path)
    return total


@pytest.mark.slow
def test_ingest_memory_does_not_grow_with_the_data_and_the_written_classes_interleave(tmp_path):
    """Beam's DirectRunner holds whatever is shuffled or grouped in memory. TFX's WriteSplit
    reshuffled every example (ExampleGen's peak +498 MB for 105 MB more images), and TFDV,
    given no schema, grouped every image's bytes for its unique counts (StatisticsGen +1.3 GB
    from 5,000 to 20,000 images in `make bench-scale`). On 4x the data, neither stage's peak may
    grow by as much as the extra data (those two grew by 4.7x and 5.3x it)."""
    # Well over 1,000 training examples in each: StatisticsGen's record batches (up to 1,000
    # examples, as TFDV and tfx_bsl batch) are its working set, and must not count as growth.
    small_bytes = _noise_jpegs(str(tmp_path / "small"), 1000)
    large_bytes = _noise_jpegs(str(tmp_path / "large"), 4000)
    small, large = _ingest_peaks(str(tmp_path / "small"), str(tmp_path / "large"))
    data_grown_mb = (large_bytes - small_bytes) / 2**20
    assert data_grown_mb > 90
    for stage in ("example_gen_mb", "statistics_gen_mb"):
        grown_mb = large[stage] - small[stage]
        print(f"{stage}: peak {small[stage]:.0f} MB -> {large[stage]:.0f} MB with {data_grown_mb:.0f} MB more data")
        # Beam's bundles vary with the CPU left to the run: StatisticsGen grew +38 MB alone and
        # +93 MB beside the rest of the suite, where the data-wide grouping grew +604 MB.
        assert grown_mb < data_grown_mb, f"{stage}: peak grew {grown_mb:.0f} MB with {data_grown_mb:.0f} MB more data"
    # Written in a hashed order of the paths, not class by class as listed.
    first = large["train"][:40]
    assert 10 <= first.count("a") <= 30, first
