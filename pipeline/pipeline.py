"""create_pipeline: Graft's one TFX DAG, wired from a validated GraftConfig.

Shared by the local runner and the Kubeflow compiler; runners differ only in runner settings.
Functions are referenced by import path (the installed `components` package), never by
module_file, so nothing is packaged or uploaded at compile time.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow_data_validation as tfdv

# Not `tfx.v1`: it imports Vertex AI's client (~6 s of every run's and every Kubeflow task's start).
from tfx.components import FileBasedExampleGen, ImportExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.tuner.component import Tuner
from tfx.dsl.components.base import executor_spec
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.dsl.input_resolution import canned_resolver_functions
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2
from tfx.types import Channel, standard_artifacts

from components.evaluator.eval_config import ClassGates, build_eval_config
from components.evaluator.executor import Evaluator
from components.example_gen import image_executor, image_ingest, text_executor, text_ingest
from components.example_validator.executor import ExampleValidator
from components.pusher.executor import Pusher
from components.retrain_gate.component import RetrainGate
from components.serving_baseline.component import ServingBaseline
from pipeline import config as cfg

# By import path, never module_file: nothing is packaged or uploaded at compile time.
TRANSFORM_FN = "components.transform.preprocessing_fn.preprocessing_fn"
RUN_FN = "components.trainer.run_fn.run_fn"
TUNER_FN = "components.tuner.tuner_fn.tuner_fn"


IMAGE_EXAMPLE_GEN_ID, TEXT_EXAMPLE_GEN_ID = "ImageExampleGen", "TextExampleGen"


def training_example_gen_id(config: cfg.GraftConfig) -> str:
    """The node id of the ExampleGen of image or text folders (what a span window reads)."""
    return TEXT_EXAMPLE_GEN_ID if config.text_data else IMAGE_EXAMPLE_GEN_ID


def _abs(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def hash_split(eval_percent: int) -> example_gen_pb2.SplitConfig:
    """train/eval by TFX's hash buckets; `partition_feature_name` is set where the input has a
    stable key (the path of an image, the hash of a text)."""
    return example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent),
        ]
    )


def example_gen_component(config: cfg.GraftConfig):
    eval_split = hash_split(config.eval_percent)
    if config.text_data:
        # A table file is the split pattern under its folder; a folder (of tables, or of class
        # folders) is read whole by the executor, and its files fingerprinted at any depth.
        # With spans, the folder's newest span-<N>/ (TFX's {SPAN} pattern, as for images).
        folder = text_ingest.table_kind(config.text_data) is None  # works for object-store paths too
        pattern = (
            f"{image_ingest.SPAN_PREFIX}{{SPAN}}/*"
            if config.spans
            else "*"
            if folder
            else os.path.basename(config.text_data)
        )
        eval_split.partition_feature_name = "path"  # the text's hash: a text keeps its split in every span
        return FileBasedExampleGen(
            input_base=_abs(config.text_data if folder else os.path.dirname(config.text_data) or "."),
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)]),
            output_config=example_gen_pb2.Output(split_config=eval_split),
            custom_config=image_executor.make_custom_config(cfg.example_gen_settings(config)),
            custom_executor_spec=executor_spec.BeamExecutorSpec(text_executor.Executor),
        ).with_id(TEXT_EXAMPLE_GEN_ID)
    if config.tfrecord_dir:
        return ImportExampleGen(
            input_base=_abs(config.tfrecord_dir),
            output_config=example_gen_pb2.Output(split_config=eval_split),
        )
    # With spans, each run takes the newest DIR/span-<N>/ (TFX's {SPAN} pattern, resolved by its driver).
    span = image_ingest.newest_span(config.data_dir) if config.spans else None
    if config.spans and not span:
        raise ValueError(f"{config.data_dir}: spans is set but there is no span-<N> folder")
    prefix = f"{image_ingest.SPAN_PREFIX}{{SPAN}}/" if span else ""
    split_roots = image_ingest.detect_split_roots(os.path.join(config.data_dir, span) if span else config.data_dir)
    if split_roots:
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=name, pattern=f"{prefix}{name}/*/*") for name in split_roots]
        )
        output_config = example_gen_pb2.Output()
    else:
        input_config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=f"{prefix}*/*")])
        # Deterministic split: TFX hashes the source path (relative to the data root, or to the
        # span folder with spans, so an image keeps its split as spans accumulate).
        eval_split.partition_feature_name = "path"
        output_config = example_gen_pb2.Output(split_config=eval_split)
    return FileBasedExampleGen(
        input_base=_abs(config.data_dir),
        input_config=input_config,
        output_config=output_config,
        custom_config=image_executor.make_custom_config(cfg.example_gen_settings(config)),
        custom_executor_spec=executor_spec.BeamExecutorSpec(image_executor.Executor),
    ).with_id(IMAGE_EXAMPLE_GEN_ID)


def training_examples(config: cfg.GraftConfig, example_gen, window_spans=()):
    """What Transform, the Trainer and the Evaluator read: this run's span, or with span_window the
    spans `window_spans` names (pipeline.local_dag.training_window: this run's and the newest ones
    trained before it), each span's latest ingest, resolved from ML Metadata by TFX's static span
    range. A plain Channel, not this run's output channel: that one holds this run's artifact only."""
    if config.span_window <= 1 or len(window_spans) < 2:
        return example_gen.outputs["examples"]
    first, last = min(window_spans), max(window_spans)
    every_run = Channel(type=standard_artifacts.Examples, producer_component_id=example_gen.id, output_key="examples")
    return canned_resolver_functions.static_range(
        every_run,
        start_span_number=first,
        end_span_number=last,
        exclude_span_numbers=[span for span in range(first, last + 1) if span not in window_spans],
        min_spans=1,
    )


GOLDEN_SPLIT = "golden"


def golden_example_gen_component(config: cfg.GraftConfig):
    """The golden set (eval_data) as one split, `golden`, ingested by the same executor and rules as
    the training data (quarantine, accounting), its labels indexed by the training classes."""
    if config.text_data and text_ingest.table_kind(config.eval_data) is not None:
        input_base, pattern = os.path.dirname(_abs(config.eval_data)), os.path.basename(config.eval_data)
    else:
        input_base, pattern = _abs(config.eval_data), "*" if config.text_data else "*/*"
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)]),
        # One output split (TFX's default for one input split is train/eval 2:1).
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=GOLDEN_SPLIT, hash_buckets=1)]
            )
        ),
        custom_config=image_executor.make_custom_config(cfg.example_gen_settings(config, golden=True)),
        custom_executor_spec=executor_spec.BeamExecutorSpec(
            text_executor.Executor if config.text_data else image_executor.Executor
        ),
    ).with_id("GoldenExampleGen")


# Top-k and unique counts from bounded sketches (TFDV's option): its exact counts group every
# distinct value of a string feature (each path, each text) in memory.
STATS_OPTIONS = tfdv.StatsOptions(use_sketch_based_topk_uniques=True)


def create_pipeline(
    config: cfg.GraftConfig,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[list] = None,
    serving_state: str = "",
    window_spans=(),
) -> tfx_pipeline.Pipeline:
    """The DAG for `config`, whose class_names must be known (pipeline.preflight sets them).
    `serving_state`: what serves now (retrain_gate.component.serving_state), in the RetrainGate's
    cache key; the local runner passes it, the Kubeflow compiler turns the gate's cache off.
    `window_spans`: the spans a span_window run trains on (pipeline.local_dag.training_window)."""
    if not config.class_names:
        raise ValueError("config.class_names is unset: run pipeline.preflight.check(config) first")
    example_gen = example_gen_component(config)
    # Nothing new, nothing trained: every node after this one runs only when the gate says so.
    gate = RetrainGate(example_gen.outputs["examples"], cfg.retrain_gate_settings(config), serving_state)
    with Cond(gate.retrains()):
        gated = _nodes_after_the_gate(config, example_gen, gate, serving_state, window_spans)
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=_abs(config.pipeline_root),
        components=[example_gen, gate, *gated],
        enable_cache=config.enable_cache and not config.force_retrain,  # --force: a cached Trainer would not train
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=with_text_ops(beam_pipeline_args or cfg.beam_args(config), config.kind),
    )


def _nodes_after_the_gate(
    config: cfg.GraftConfig, example_gen, gate: RetrainGate, serving_state: str, window_spans=()
) -> list:
    """Every node after the RetrainGate (built inside its Cond), in order. TFX leaves a Cond's
    predicate out of a node's cache key, so with init_from serving what serves goes into the
    Trainer's (and Tuner's) settings."""
    if config.schema_dir:
        schema_gen = ImportSchemaGen(schema_file=_abs(os.path.join(config.schema_dir, "schema.pbtxt")))
        # The curated schema marks `image` as image bytes, which TFDV then leaves out of its top-k
        # and unique counts: without it, every image's bytes were grouped in memory.
        statistics_gen = StatisticsGen(
            examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], stats_options=STATS_OPTIONS
        )
    else:
        statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"], stats_options=STATS_OPTIONS)
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    # StatisticsGen and ExampleValidator judge the new span; older spans were judged when they came.
    window = training_examples(config, example_gen, window_spans)
    transform = Transform(
        examples=window,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=TRANSFORM_FN,
        custom_config=cfg.transform_settings(config).to_dict(),
        materialize=False,  # decoded floats are ~34x the encoded bytes; the Trainer applies the graph
        disable_statistics=True,
    )
    tuner = None
    if config.tuner_section.trials:
        # KerasTuner's search over Graft's stages; the Trainer retrains with the best values.
        tuner = Tuner(
            tuner_fn=TUNER_FN,
            examples=window,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            custom_config=cfg.tuner_settings(config, serving_state).to_dict(),
        )
        tuner.add_upstream_node(example_validator)
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=window,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        custom_config=cfg.trainer_settings(config, serving_state).to_dict(),
    )
    # Ordering only: never train on data that failed validation (nor, with a window, on spans
    # resolved before this run's ExampleGen finished).
    trainer.add_upstream_node(example_validator)
    transform.add_upstream_node(example_gen)
    baseline = ServingBaseline(model=trainer.outputs["model"], serving_dir_path=config.serving_dir)
    eval_config = build_eval_config(
        len(config.class_names),
        config.min_accuracy,
        config.max_accuracy_drop,
        config.max_relative_accuracy_drop,
        config.slice_by_class,
        class_gates=ClassGates(config.class_names, config.min_class_recall, config.max_class_recall_drop),
        promote_when=config.promote_when,
    )
    evaluator = Evaluator(
        examples=window,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline_model"],
        eval_config=eval_config,
        example_splits=["eval"],
        settings=cfg.evaluator_settings(config),
    )
    golden = []
    if config.eval_data:
        # The same judgement on the golden set: a fixed yardstick, where the eval split changes with
        # each span. The Pusher needs both blessings.
        # Per-class gates stay the eval split's: a class the golden set lacks (or whose images were
        # all quarantined) would be a missing slice, which TFMA fails, on every run.
        golden_gen = golden_example_gen_component(config)
        golden_evaluator = Evaluator(
            examples=golden_gen.outputs["examples"],
            model=trainer.outputs["model"],
            baseline_model=baseline.outputs["baseline_model"],
            eval_config=build_eval_config(
                len(config.class_names),
                config.min_accuracy,
                config.max_accuracy_drop,
                config.max_relative_accuracy_drop,
                config.slice_by_class,
                promote_when=config.promote_when,
            ),
            example_splits=[GOLDEN_SPLIT],
            settings=cfg.evaluator_settings(config),
        ).with_id("GoldenEvaluator")
        golden = [golden_gen, golden_evaluator]
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        baseline_model=baseline.outputs["baseline_model"],
        examples=window,
        evaluation=evaluator.outputs["evaluation"],
        decision=gate.outputs["decision"],
        golden_blessing=golden[1].outputs["blessing"] if golden else None,
        golden_evaluation=golden[1].outputs["evaluation"] if golden else None,
        custom_config=cfg.pusher_settings(config).to_dict(),
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=_abs(config.serving_dir))
        ),
    )
    return [
        statistics_gen,
        schema_gen,
        example_validator,
        transform,
        *([tuner] if tuner else []),
        trainer,
        baseline,
        evaluator,
        *golden,
        pusher,
    ]


TEXT_OPS_PLUGIN = "--beam_plugins=tensorflow_text"


def with_text_ops(beam_args: list, kind: str) -> list:
    """A text pipeline's Beam workers (separate processes with multi_processing, the Kubeflow
    default, or on Dataflow) load Transform graphs and models that hold tensorflow-text's ops:
    Beam imports its plugins in every worker before any work (tensorflow/transform#170)."""
    if kind != "text" or any(a.startswith("--beam_plugins") and "tensorflow_text" in a for a in beam_args):
        return list(beam_args)
    return [*beam_args, TEXT_OPS_PLUGIN]
