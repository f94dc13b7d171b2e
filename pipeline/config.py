"""GraftConfig: the one settings object, from config file and flags to every component.

The schema and every default live here, once. `load_config` reads a YAML/JSON file as data
(yaml.safe_load: no code is ever executed), flags override the file, and `validate` reports
every problem at once, before TFX starts. Stages, augmentation, the `export:` and `kubeflow:` sections are
parsed once (cached on the config); each component receives its typed slice
(`trainer_settings()` and so on) through its custom_config.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from components import beam_flags, files
from components.backbones import registry
from components.contract import ConfigError
from components.drift.settings import DriftSection
from components.evaluator.settings import PROMOTE_WHEN, EvaluatorSettings
from components.example_gen import image_ingest, text_ingest
from components.example_gen.settings import ExampleGenSettings
from components.pusher.settings import PusherSettings
from components.retrain_gate.settings import RetrainGateSettings
from components.settings import code_version
from components.trainer import augmentation
from components.trainer.settings import INIT_FROM, ExportSettings, TrainerSettings
from components.trainer.stages import Stage, resolve_stages
from components.transform.settings import TransformSettings
from components.tuner.settings import TunerSection, TunerSettings
from kubeflow.settings import KubeflowSettings

__all__ = ["ConfigError", "GraftConfig", "load_config", "load_config_file", "validate"]
_REPO_SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas")


# The paths that may be on an object store (gs://, s3://, minio://).
OBJECT_STORE_PATHS = ("pipeline_root", "serving_dir", "data_dir", "tfrecord_dir", "text_data", "eval_data")


@dataclass
class GraftConfig:
    # Where things go (TFX template conventions when unset).
    pipeline_name: str = "graft"
    pipeline_root: Optional[str] = None  # tfx_pipeline_output/<pipeline_name>
    metadata_path: Optional[str] = None  # tfx_metadata/<pipeline_name>/metadata.db
    serving_dir: Optional[str] = None  # <pipeline_root>/serving_model
    # Data: one of data_dir (image class folders, optionally train/ and eval/), tfrecord_dir, or
    # text_data (a CSV/TSV/JSON Lines table, a folder of them, or class folders of .txt files).
    data_dir: Optional[str] = None
    tfrecord_dir: Optional[str] = None
    text_data: Optional[str] = None
    class_names: Optional[list] = None  # for TFRecords: names of labels 0..K-1
    # A golden set: a fixed labelled set (image class folders, or a text table like text_data) on
    # which every candidate and the serving model are scored besides the eval split; never trained on.
    eval_data: Optional[str] = None
    spans: bool = False  # the data folder holds span-<N>/ folders (new data lands as a new span); runs take the newest
    span_window: int = 1  # with spans: train and evaluate on the newest K spans ingested (TFX's rolling range), not one
    eval_percent: int = 20  # hash split by path when the data is not pre-split
    schema_dir: Optional[str] = "auto"  # auto: the curated schema for the input kind; None: SchemaGen
    max_quarantine_fraction: float = 0.05
    min_images_per_class: int = 5
    allow_class_change: bool = False  # True: accept a class set that differs from the serving model's
    max_image_pixels: int = 50_000_000  # larger images are rejected from their header
    # Text input (text_data).
    text_column: str = "text"  # the text column of a table
    label_column: str = "label"  # the label column of a table
    labels: Optional[list] = None  # only these labels; rows with others are skipped by rule (counted)
    max_text_chars: int = 20_000  # longer texts are truncated, or quarantined with long_text: quarantine
    long_text: str = "truncate"  # truncate | quarantine
    lowercase: bool = False  # lower-case texts in Transform (so at serving too)
    max_tokens: int = 128  # text_scratch: words and word pairs read per text; hub_bert: word pieces with [CLS], [SEP]
    text_preprocessor: Optional[str] = None  # hub_bert: its TF Hub preprocessing model (URL or SavedModel dir)
    vocab_size: int = 20_000  # text_scratch: vocabulary computed in Transform (words seen at least twice)
    embedding_dim: int = 64  # text_scratch
    # Model.
    backbone: Optional[str] = None  # None: mobilenet_v2 for images, text_tfidf for text
    weights: Optional[str] = (
        None  # imagenet | none | path to a Keras weights file | a TF Hub handle; None: imagenet, none for text_tfidf and text_scratch
    )
    image_size: Optional[int] = None  # the backbone's default when unset
    backbone_kwargs: dict = field(default_factory=dict)  # e.g. {alpha: 0.35} for MobileNetV2
    dropout: float = 0.2  # before the head (text_tfidf: on the TF-IDF vector; measured better than none on reviews)
    head_l2: Optional[float] = (
        None  # L2 penalty on the head's weights; None: text_tfidf's (see TrainerSettings), else 0
    )
    # Training.
    init_from: str = "backbone"  # backbone | serving: fine-tune the model now serving (same classes) when there is one
    stages: Any = "auto"  # a preset name or a list of stage dicts; auto: two_stage, scratch with weights none, frozen for text_tfidf
    epochs: int = 5  # head epochs for the presets (at least; see min_head_steps)
    fine_tune_epochs: int = 10  # fine-tuning epochs for the presets (at least; see min_fine_tune_steps)
    # The head stage (and scratch) runs at least this many optimizer steps (adding at most 300
    # epochs). None: 300, and 3,000 with the rate decaying to zero for text_tfidf, whose head is
    # the whole model: trained to its optimum, so retrains differ little by seed.
    min_head_steps: Optional[int] = None
    min_fine_tune_steps: int = 100  # the fine-tuning stages run at least this many optimizer steps
    fine_tune_layers: Any = "all"  # what two_stage unfreezes: all, or the top N layers
    learning_rate: Optional[float] = None  # the head's; None: found by a range test on the training data
    fine_tune_learning_rate: Optional[float] = None  # None: a tenth of the head's (hub_bert: 3e-5)
    batch_size: int = 32
    train_batchnorm: Optional[bool] = None  # None: only from scratch (weights none); False: inference mode always
    augmentation: Any = "none"  # none | light | standard | a list of {type, factor}; training only
    early_stopping_patience: int = 0  # 0: off; else stop a stage after N epochs without val_loss gain, keep the best
    validation_percent: Optional[int] = (
        None  # of the training split, carved for model selection (the eval split stays unseen); None: 10, none below 1,000 training examples
    )
    label_smoothing: float = 0.0
    class_weights: Optional[str] = None  # "balanced": weights from the training label distribution
    mixed_precision: str = "auto"  # auto: mixed_float16 on a GPU, float32 on a CPU | mixed_float16 | float32
    allow_cpu_fallback: bool = False  # a Trainer given GPUs (Kubeflow) that TensorFlow cannot see: False fails at start
    feature_caching: bool = True  # frozen stages without augmentation train the head on features computed once
    feature_cache_mb: int = 2048  # memory for those features; beyond it the stage trains through the backbone
    image_cache_mb: int = 2048  # decoded training images cached in memory up to this size (else decoded per epoch)
    shuffle_buffer_mb: int = 1024  # the training shuffle buffer's bytes (10,000 images at 380 px were 17 GB)
    discriminative_lr: float = 0.0  # 0: off; f in (0, 1): deepest trainable backbone layer learns at f x the rate
    batchnorm_momentum: Optional[float] = None  # None: Keras' own, or 0.9 from scratch (0.999 lags far behind)
    allow_frozen_random_backbone: bool = False  # True: accept frozen stages on a randomly initialised backbone
    seed: int = 42
    # Evaluation and promotion.
    min_accuracy: float = 0.5
    max_accuracy_drop: float = 0.0  # vs the model now serving, absolute
    max_relative_accuracy_drop: Optional[float] = None  # vs the model now serving, a fraction
    promote_when: str = "better"  # better | not_worse | point: the accuracy change's 95 % interval (see the README)
    slice_by_class: bool = True  # evaluation sliced by class as well as overall
    min_class_recall: Optional[float] = None  # each class's recall must reach this (None: not gated)
    max_class_recall_drop: Optional[float] = (
        None  # any class's recall vs the serving model's, absolute (None: not gated)
    )
    keep_versions: int = 5  # serving versions kept (the one serving is never deleted)
    export: dict = field(default_factory=dict)  # on-device models, e.g. {tflite: both}: see ExportSettings
    tuner: dict = field(
        default_factory=dict
    )  # e.g. {trials: 8}: TFX's Tuner searches rates, depth, budget; see TunerSection
    drift: dict = field(default_factory=dict)  # new span vs the serving model's data: see DriftSection
    # Runtime.
    beam_direct_running_mode: str = "in_memory"  # in_memory | multi_processing | multi_threading
    beam_num_workers: int = 0  # 0: one per CPU
    enable_cache: bool = True
    force_retrain: bool = False  # train even when the data, config and code equal the serving model's (cache off)
    beam_pipeline_args: Optional[list] = None  # None: the runner's default (locally DirectRunner in_memory)
    kubeflow: dict = field(default_factory=dict)  # Kubeflow runner settings: see kubeflow/settings.py

    def __post_init__(self):
        # Defaults that depend on the input: TF-IDF + a linear head is the from-scratch text model
        # that matched the classic bar on both corpora measured (see the README).
        self.backbone = self.backbone or (registry.TEXT_TFIDF.name if self.text_data else "mobilenet_v2")
        if self.weights is None:
            self.weights = "none" if self.backbone in registry.LEARNED_TEXT else "imagenet"
        self.pipeline_root = self.pipeline_root or os.path.join("tfx_pipeline_output", self.pipeline_name)
        self.metadata_path = self.metadata_path or os.path.join("tfx_metadata", self.pipeline_name, "metadata.db")
        self.serving_dir = self.serving_dir or os.path.join(self.pipeline_root, "serving_model")
        for name in OBJECT_STORE_PATHS:  # minio:// as s3://, and s3:// readable in this process
            setattr(self, name, files.normalize(getattr(self, name)))
            files.register(getattr(self, name))
        if self.schema_dir == "auto":
            kind = "image_classification_tfrecord" if self.tfrecord_dir else "image_classification"
            self.schema_dir = os.path.join(_REPO_SCHEMAS, "text_classification" if self.text_data else kind)

    # ---- derived settings, computed (and parsed) once ----
    @property
    def backbone_entry(self) -> registry.Backbone:
        return registry.get(self.backbone)

    @property
    def input_size(self) -> int:
        return self.image_size or self.backbone_entry.default_size

    @property
    def kind(self) -> str:
        """image | text: what the data and the backbone are."""
        return "text" if self.text_data else "image"

    @property
    def local_output_dir(self) -> str:
        """Where a run's log, report and run-local's work go on this machine: the pipeline root, or,
        when that is on an object store, beside the ML Metadata database (they are local files)."""
        return self.pipeline_root if "://" not in self.pipeline_root else os.path.dirname(self.metadata_path)

    @property
    def data_path(self) -> str:
        return self.data_dir or self.tfrecord_dir or self.text_data or ""

    @property
    def text_rules(self) -> text_ingest.TextRules:
        return text_ingest.TextRules(
            text_column=self.text_column,
            label_column=self.label_column,
            max_text_chars=self.max_text_chars,
            long_text=self.long_text,
            labels=[str(label) for label in self.labels] if self.labels is not None else None,
            lowercase=self.lowercase,
        )

    @property
    def fine_tune_rate(self) -> Optional[float]:
        """The fine-tuning rate when it is fixed by the config: as given; a tenth of a given head
        rate; a whole BERT-family encoder at 3e-5, inside the 2e-5..5e-5 its authors fine-tune at
        (a range test's rate for the head would wreck its pretrained weights). None: a tenth of the
        rate the range test finds."""
        if self.fine_tune_learning_rate is not None:
            return self.fine_tune_learning_rate
        if self.backbone == registry.HUB_BERT.name:
            return 3e-5
        return self.learning_rate / 10 if self.learning_rate is not None else None

    @property
    def scratch_learning_rate(self) -> Optional[float]:
        """The scratch preset's rate: as given, else the range test's on the whole model."""
        return self.learning_rate

    @property
    def from_scratch(self) -> bool:
        """No pretrained weights: the backbone starts random."""
        return self.weights == "none"  # text_scratch, text_tfidf: validate requires it

    @property
    def batchnorm_trains(self) -> bool:
        return self.from_scratch if self.train_batchnorm is None else self.train_batchnorm

    @property
    def batchnorm_momentum_used(self) -> Optional[float]:
        return self.batchnorm_momentum if self.batchnorm_momentum is not None or not self.from_scratch else 0.9

    @property
    def runtime_env(self) -> dict:
        """Environment every process of this pipeline starts with (set before TensorFlow loads).
        TF 2.16's oneDNN CPU kernels corrupt memory when a transformer's attention runs on
        several threads at once, as the Evaluator's and any server's do (measured: 6 crashes in
        6 runs of 4 threads, none with oneDNN off; the family of tensorflow/tensorflow#117700)."""
        return {"TF_ENABLE_ONEDNN_OPTS": "0"} if self.backbone == registry.HUB_BERT.name else {}

    @functools.cached_property
    def stage_plan(self) -> tuple[Stage, ...]:
        """`stages` (a preset or a list) as checked Stage objects; raises ConfigError."""
        return tuple(resolve_stages(self))

    @functools.cached_property
    def augmentation_plan(self) -> list:
        """`augmentation` (a preset or a list) as checked {type, factor} items; raises ConfigError."""
        return augmentation.resolve(self.augmentation)

    @functools.cached_property
    def export_settings(self) -> ExportSettings:
        """The `export:` section, checked; raises ConfigError."""
        return ExportSettings.from_section(self.export)

    @functools.cached_property
    def tuner_section(self) -> TunerSection:
        """The `tuner:` section, checked; raises ConfigError."""
        return TunerSection.from_section(self.tuner)

    @functools.cached_property
    def drift_section(self) -> DriftSection:
        """The `drift:` section, checked; raises ConfigError."""
        return DriftSection.from_section(self.drift)

    @functools.cached_property
    def kubeflow_settings(self) -> KubeflowSettings:
        """The `kubeflow:` section, checked; raises ConfigError."""
        return KubeflowSettings.from_dict(self.kubeflow)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> GraftConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"{source}: unknown option(s) {', '.join(hints)}")
        return cls(**values)


def load_config_file(path: str) -> dict:
    """A config file's settings as a dict: YAML or JSON, parsed as data only."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return {k.replace("-", "_"): v for k, v in values.items()}


def load_config(config_file: Optional[str], overrides: dict) -> GraftConfig:
    """File settings, then flag overrides (None means 'not given'), as one validated config."""
    values = load_config_file(config_file) if config_file else {}
    source = config_file or "flags"
    overrides = dict(overrides)
    sections = {"tuner_trials": ("tuner", "trials"), "on_drift": ("drift", "on_drift")}  # one option of a section
    for flag, (section, option) in sections.items():
        value = overrides.pop(flag, None)
        if value is not None:
            values[section] = {**(values.get(section) or {}), option: value}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = GraftConfig.from_dict(values, source)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from None
    validate(config)
    return config


def eval_data_problems(config: GraftConfig) -> list:
    """What is wrong with the golden set's option (eval_data), if anything."""
    path = config.eval_data
    if not path:
        return []
    if config.tfrecord_dir:
        return ["--eval-data goes with --data-dir or --text-data (TFRecord input has no file to keep out of training)"]
    if "://" in path:
        return []  # object stores are checked where the pipeline runs
    if config.text_data and not os.path.exists(path):
        return [f"--eval-data {path}: no such file or folder"]
    if not config.text_data and not os.path.isdir(path):
        return [f"--eval-data {path}: no such directory (image class folders, like --data-dir)"]
    data = config.data_dir or config.text_data
    if data and "://" not in data:
        inner, outer = os.path.realpath(path), os.path.realpath(data)
        if inner == outer or inner.startswith(outer.rstrip("/") + "/") or outer.startswith(inner.rstrip("/") + "/"):
            return [
                f"--eval-data {path} overlaps the training data {data}: keep the golden set in its own folder "
                "(what it holds is never trained on)"
            ]
    return []


def validate(config: GraftConfig) -> None:
    """Raises ConfigError listing every problem found; cheap checks only (no TFX, no TF)."""
    problems = []
    if sum(bool(p) for p in (config.data_dir, config.tfrecord_dir, config.text_data)) != 1:
        problems.append("give exactly one of --data-dir (image folders), --tfrecord-dir or --text-data")
    if config.text_data and "://" not in config.text_data and not os.path.exists(config.text_data):
        problems.append(f"--text-data {config.text_data}: no such file or folder")
    for option in ("data_dir", "tfrecord_dir"):
        path = getattr(config, option)
        if path and "://" in path:
            continue  # object stores are checked where the pipeline runs
        if path and not os.path.isdir(path):
            problems.append(f"--{option.replace('_', '-')} {path}: no such directory")
        elif path and not os.access(path, os.R_OK | os.X_OK):
            problems.append(f"--{option.replace('_', '-')} {path}: not readable")
    problems.extend(eval_data_problems(config))
    if config.schema_dir and not os.path.isfile(os.path.join(config.schema_dir, "schema.pbtxt")):
        problems.append(f"schema_dir {config.schema_dir}: no schema.pbtxt there")
    entry = None
    try:
        entry = registry.get(config.backbone)
        reason = entry.check_size(config.input_size, config.weights) if entry.kind == "image" else None
        if reason:
            problems.append(f"--image-size: {reason}")
    except registry.UnknownBackboneError as err:
        problems.append(f"--backbone: {err}")
    if entry is not None and entry.kind != config.kind:
        wanted = (
            "text_tfidf, text_scratch, hub_text or hub_bert"
            if config.kind == "text"
            else "an image backbone (see `graft backbones`)"
        )
        problems.append(f"--backbone {config.backbone} reads {entry.kind}, but the data is {config.kind}: use {wanted}")
    if config.backbone == registry.HUB_BERT.name and not registry.is_hub_handle(config.text_preprocessor or ""):
        problems.append(
            f"--text-preprocessor {config.text_preprocessor or '(unset)'}: hub_bert needs the encoder's TF Hub preprocessing "
            "model (https://... URL or a local SavedModel directory), e.g. https://tfhub.dev/tensorflow/"
            "bert_en_uncased_preprocess/3 for the uncased BERTs"
        )
    elif config.text_preprocessor and config.backbone != registry.HUB_BERT.name:
        problems.append(f"--text-preprocessor applies to --backbone hub_bert only (the backbone is {config.backbone})")
    if entry is not None and entry.is_hub:
        if not registry.is_hub_handle(config.weights):
            problems.append(
                f"--weights {config.weights}: the {entry.name} backbone needs a TF Hub handle "
                "(https://... URL or a local TF2 SavedModel directory)"
            )
    elif config.backbone in registry.LEARNED_TEXT:
        if config.weights != "none":
            problems.append(
                f"--weights {config.weights}: {config.backbone} learns from the data alone; set weights: none"
            )
    elif config.weights not in ("imagenet", "none") and not os.path.isfile(config.weights):
        problems.append(f"--weights {config.weights}: expected 'imagenet', 'none' or an existing weights file")
    if not 0 <= config.max_quarantine_fraction <= 1:
        problems.append("max_quarantine_fraction must be between 0 and 1")
    if config.min_images_per_class < 1:
        problems.append("min_images_per_class must be >= 1")
    if not 1 <= config.eval_percent <= 90:
        problems.append("eval_percent must be between 1 and 90")
    if not 0.0 <= config.min_accuracy <= 1.0:
        problems.append("--min-accuracy must be between 0 and 1")
    if config.max_accuracy_drop < 0:
        problems.append("max_accuracy_drop must be >= 0")
    if config.max_relative_accuracy_drop is not None and not 0 <= config.max_relative_accuracy_drop < 1:
        problems.append("max_relative_accuracy_drop must be in [0, 1)")
    if config.init_from not in INIT_FROM:
        problems.append(f"init_from must be one of {', '.join(INIT_FROM)} (got {config.init_from!r})")
    elif config.init_from == "serving" and config.backbone in registry.LEARNED_TEXT:
        problems.append(
            f"init_from serving: {config.backbone} computes its vocabulary anew from each run's data, so the served "
            "model's weights would meet other word ids; use init_from: backbone (or a hub_text / hub_bert backbone)"
        )
    if config.promote_when not in PROMOTE_WHEN:
        problems.append(f"promote_when must be one of {', '.join(PROMOTE_WHEN)} (got {config.promote_when!r})")
    for name in ("min_class_recall", "max_class_recall_drop"):
        value = getattr(config, name)
        if value is not None and not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1 (a fraction of the class's eval examples)")
        if value is not None and not config.slice_by_class:
            problems.append(f"{name} gates each class's slice: it needs slice_by_class: true")
        if value is not None and config.tfrecord_dir:
            problems.append(f"{name}: --tfrecord-dir examples have no class-name feature to slice the evaluation by")
    if config.keep_versions < 1:
        problems.append("keep_versions must be >= 1")
    if config.batch_size < 1:
        problems.append("--batch-size must be >= 1")
    if not 0.0 <= config.dropout < 1.0:
        problems.append("dropout must be in [0, 1)")
    if config.beam_direct_running_mode not in ("in_memory", "multi_processing", "multi_threading"):
        problems.append("beam_direct_running_mode must be in_memory, multi_processing or multi_threading")
    for parsed in (
        "stage_plan",
        "augmentation_plan",
        "export_settings",
        "tuner_section",
        "drift_section",
        "kubeflow_settings",
    ):
        try:
            getattr(config, parsed)
        except ConfigError as err:
            problems.append(str(err))
    try:
        frozen = [s.name for s in config.stage_plan if s.trainable == "none"]
        partial = [f"{s.name!r} ({s.trainable})" for s in config.stage_plan if s.trainable not in ("none", "all")]
    except ConfigError:
        frozen, partial = [], []  # reported above
    if partial and config.backbone in (registry.HUB.name, registry.HUB_TEXT.name):
        problems.append(
            f"stages: {', '.join(partial)} unfreeze part of the backbone, but a {config.backbone} backbone is one "
            "TF Hub layer whose parts cannot train alone: use trainable 'none' (frozen) or 'all' (the whole model; "
            "the auto recipe does that after the head); hub_bert counts the blocks of a BERT-family encoder"
        )
    random_features = config.from_scratch and config.backbone != registry.TEXT_TFIDF.name  # TF-IDF is no random feature
    if random_features and frozen and not config.allow_frozen_random_backbone:
        problems.append(
            f"stages: {', '.join(repr(n) for n in frozen)} keep the backbone frozen, but with --weights none it is "
            "random: a head on random features does not learn (the loss stays at ln(classes)). Leave stages unset "
            "for the from-scratch recipe (everything trains), unfreeze the backbone, pass pretrained --weights, or "
            "set allow_frozen_random_backbone: true to insist"
        )
    if config.fine_tune_layers != "all" and not (
        isinstance(config.fine_tune_layers, int)
        and not isinstance(config.fine_tune_layers, bool)
        and config.fine_tune_layers > 0
    ):
        problems.append(f"fine_tune_layers must be 'all' or a positive layer count (got {config.fine_tune_layers!r})")
    for name in ("min_head_steps", "min_fine_tune_steps"):
        if name == "min_head_steps" and config.min_head_steps is None:
            continue
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 0:
            problems.append(f"{name} must be an integer >= 0")
    for name in ("learning_rate", "fine_tune_learning_rate"):
        rate = getattr(config, name)
        if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate < 1):
            problems.append(f"{name} must be in (0, 1) (got {rate!r})")
    if not 0 <= config.label_smoothing < 1:
        problems.append("label_smoothing must be in [0, 1)")
    if config.class_weights not in (None, "balanced"):
        problems.append("class_weights must be 'balanced' or unset")
    if config.mixed_precision not in ("auto", "mixed_float16", "float32"):
        problems.append("mixed_precision must be auto, mixed_float16 or float32")
    if not 0 <= config.discriminative_lr < 1:
        problems.append("discriminative_lr must be in [0, 1) (0: off)")
    if config.early_stopping_patience < 0:
        problems.append("early_stopping_patience must be >= 0")
    for name in ("feature_cache_mb", "image_cache_mb", "shuffle_buffer_mb"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0")
    if config.kind == "text":
        if config.long_text not in text_ingest.LONG_TEXT_POLICIES:
            problems.append(f"long_text must be truncate or quarantine (got {config.long_text!r})")
        for name in ("max_text_chars", "max_tokens", "vocab_size", "embedding_dim"):
            if getattr(config, name) < 1:
                problems.append(f"{name} must be >= 1")
        if config.augmentation not in ("none", None, []):
            problems.append("augmentation applies to images only; set augmentation: none for text")
        if config.spans and text_ingest.table_kind(config.text_data) is not None:
            problems.append(
                f"spans: --text-data {config.text_data} is a table; with spans it is a folder of span-<N>/ folders "
                "(each a table, a folder of tables, or class folders of .txt files)"
            )
        try:
            if config.export_settings.kinds:
                problems.append("export.tflite applies to image backbones only")
        except ConfigError:
            pass  # reported above
    if config.span_window < 1:
        problems.append(f"span_window must be >= 1 (got {config.span_window})")
    elif config.span_window > 1 and not (config.spans and (config.data_dir or config.text_data)):
        problems.append(
            "span_window > 1 needs spans: true and data_dir or text_data (a window of span-<N>/ folders; "
            "TFRecords carry no spans)"
        )
    if config.validation_percent is not None and not 0 <= config.validation_percent <= 50:
        problems.append("validation_percent must be between 0 and 50")
    elif config.early_stopping_patience and config.validation_percent == 0:
        problems.append("early_stopping_patience needs validation_percent > 0: it selects on that validation part")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


# ---- the slices each component receives (its custom_config): only what it uses, so that a
# change to, say, epochs does not invalidate the cached ExampleGen or Transform ----


def example_gen_settings(config: GraftConfig, golden: bool = False) -> ExampleGenSettings:
    """The training data's ExampleGen, or (`golden`) the golden set's (eval_data)."""
    data = config.data_dir or config.text_data or ""
    span = image_ingest.newest_span(data) if data and config.spans and not golden else None
    eval_data = _abs_path(config.eval_data) if config.eval_data else None
    if golden:
        data = eval_data
    return ExampleGenSettings(
        code_version=code_version("example_gen"),
        max_image_pixels=config.max_image_pixels,
        max_quarantine_fraction=config.max_quarantine_fraction,
        min_images_per_class=config.min_images_per_class,
        data_fingerprint=image_ingest.tree_fingerprint(os.path.join(data, span or "")) if data else "",
        text_rules=config.text_rules if config.text_data else None,
        golden_data=None if golden else eval_data,
        golden_fingerprint=image_ingest.tree_fingerprint(eval_data) if eval_data and not golden else "",
        class_names=list(config.class_names) if golden else None,
    )


def _abs_path(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def transform_settings(config: GraftConfig) -> TransformSettings:
    return TransformSettings(
        code_version=code_version("transform"),
        backbone=config.backbone,
        image_size=config.input_size,
        max_image_pixels=config.max_image_pixels,
        lowercase=config.lowercase,
        max_text_chars=config.max_text_chars,
        max_tokens=config.max_tokens,
        vocab_size=config.vocab_size,
        text_preprocessor=_local_or_handle(config.text_preprocessor or ""),
    )


def _local_or_handle(path: str) -> str:
    """An absolute path for a local file or folder (components may run elsewhere), else as given."""
    return os.path.abspath(path) if path and os.path.exists(path) else path


def trainer_settings(config: GraftConfig, serving_state: str = "") -> TrainerSettings:
    """`serving_state`: what serves now (retrain_gate.component.serving_state); with init_from
    serving it is part of the Trainer's cache key."""
    return TrainerSettings(
        code_version=code_version("trainer"),
        backbone=config.backbone,
        image_size=config.input_size,
        weights=_local_or_handle(config.weights),
        warm_start_dir=_abs_path(config.serving_dir) if config.init_from == "serving" else None,
        warm_start_key=serving_state if config.init_from == "serving" else "",
        backbone_kwargs=dict(config.backbone_kwargs),
        dropout=config.dropout,
        head_l2=config.head_l2,
        stages=config.stage_plan,
        batch_size=config.batch_size,
        train_batchnorm=config.batchnorm_trains,
        batchnorm_momentum=config.batchnorm_momentum_used,
        augmentation=config.augmentation_plan,
        early_stopping_patience=config.early_stopping_patience,
        validation_percent=config.validation_percent,
        label_smoothing=config.label_smoothing,
        class_weights=config.class_weights,
        mixed_precision=config.mixed_precision,
        allow_cpu_fallback=config.allow_cpu_fallback,
        feature_caching=config.feature_caching,
        feature_cache_mb=config.feature_cache_mb,
        image_cache_mb=config.image_cache_mb,
        shuffle_buffer_mb=config.shuffle_buffer_mb,
        discriminative_lr=config.discriminative_lr,
        max_tokens=config.max_tokens,
        vocab_size=config.vocab_size,
        embedding_dim=config.embedding_dim,
        export=config.export_settings,
        max_image_pixels=config.max_image_pixels,
        max_text_chars=config.max_text_chars,
        class_names=config.class_names,
        seed=config.seed,
    )


def tuner_settings(config: GraftConfig, serving_state: str = "") -> TunerSettings:
    return TunerSettings(
        code_version=code_version("tuner"),
        trials=config.tuner_section.trials,
        validation_percent=config.tuner_section.validation_percent,
        trainer=trainer_settings(config, serving_state),
    )


# Options that say where things go and how the runner runs, not what model comes out: changing
# them alone does not make a run train again (the data's identity is ExampleGen's fingerprint).
RUN_PLUMBING = (
    "pipeline_name",
    "pipeline_root",
    "metadata_path",
    "serving_dir",
    "data_dir",
    "tfrecord_dir",
    "text_data",
    # Its effect on training (what is dropped from the data) is in ExampleGen's data listing; its
    # fingerprint is in the RetrainGate's evaluation key (a refusal holds only under the same set).
    "eval_data",
    "keep_versions",
    "beam_direct_running_mode",
    "beam_num_workers",
    "enable_cache",
    "force_retrain",
    "beam_pipeline_args",
    "kubeflow",
    "drift",  # what is checked before training, not what is trained
)
MODEL_CODE_STAGES = ("example_gen", "transform", "trainer", "tuner")


def retrain_gate_settings(config: GraftConfig) -> RetrainGateSettings:
    import hashlib

    return RetrainGateSettings(
        serving_dir=config.serving_dir if "://" in config.serving_dir else os.path.abspath(config.serving_dir),
        force=config.force_retrain,
        model_config={k: v for k, v in config.to_dict().items() if k not in RUN_PLUMBING},
        model_code=hashlib.sha256(
            "|".join(f"{stage}:{code_version(stage)}" for stage in MODEL_CODE_STAGES).encode()
        ).hexdigest()[:16],
        evaluation_key=evaluation_key(config),
        drift=config.drift_section,
        code_version=code_version("retrain_gate"),
    )


def evaluation_key(config: GraftConfig) -> str | None:
    """What judges a candidate beyond its training key (RetrainGateSettings.evaluation_key)."""
    import hashlib

    golden = ""
    if config.eval_data:
        if "://" in config.eval_data:
            return None
        golden = image_ingest.tree_fingerprint(config.eval_data)
    parts = f"golden:{golden}|evaluator:{code_version('evaluator')}|pusher:{code_version('pusher')}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def evaluator_settings(config: GraftConfig) -> EvaluatorSettings:
    return EvaluatorSettings(promote_when=config.promote_when, max_accuracy_drop=config.max_accuracy_drop)


def pusher_settings(config: GraftConfig) -> PusherSettings:
    from components.serving.provenance import code_version

    return PusherSettings(
        keep_versions=config.keep_versions,
        tflite_on_failure=config.export_settings.on_failure,
        resolved_config=config.to_dict(),
        code_version=code_version(),
    )


def beam_args(config: GraftConfig) -> list[str]:
    """The Beam flags of a local run: as given, else the DirectRunner sized for this machine; S3's
    flags (with s3:// paths) and, on the DirectRunner, the workers' environment added unless the
    flags already set them (one rule with the compiled spec's: components/beam_flags.py)."""
    if config.beam_pipeline_args is not None:
        args = list(config.beam_pipeline_args)
    else:
        workers = config.beam_num_workers or os.cpu_count() or 1
        args = [f"--direct_running_mode={config.beam_direct_running_mode}", f"--direct_num_workers={workers}"]
    if beam_flags.is_direct(args):
        # The DirectRunner's workers are this Python, so there is nothing to ship them. Without a
        # dependency flag TFX builds an sdist of itself before every Beam component (~3 s each,
        # four per run); the DirectRunner ignores the image, the flag only tells TFX not to. (A
        # runner of its own, Dataflow say, needs that package or the user's image: left to TFX.)
        args = beam_flags.with_worker_environment(args, LOCAL_BEAM_ENVIRONMENT)
    return beam_flags.with_missing(args, beam_s3_args(config))


LOCAL_BEAM_ENVIRONMENT = "graft-local-python"


BEAM_S3_PLUGIN = "components.beam_s3"  # imported by every Beam worker: empty files on S3


def beam_s3_args(config: GraftConfig) -> list[str]:
    """Beam's own S3 filesystem (its stages read and write there themselves, not through
    TensorFlow): the endpoint and region from the environment tensorflow-io reads. Credentials stay
    in the environment (boto3 reads AWS_ACCESS_KEY_ID...): pipeline arguments are stored in ML
    Metadata and printed in logs."""
    if not any(str(getattr(config, name) or "").startswith("s3://") for name in OBJECT_STORE_PATHS):
        return []
    args = [f"--beam_plugins={BEAM_S3_PLUGIN}"]
    endpoint = files.s3_endpoint_url()
    if endpoint:
        args.append(f"--s3_endpoint_url={endpoint}")
    if os.environ.get("AWS_REGION"):
        args.append(f"--s3_region_name={os.environ['AWS_REGION']}")
    return args
