"""The Trainer's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.backbones import registry
from components.contract import TFLITE_KINDS
from components.settings import ComponentSettings, ConfigSection
from components.trainer.stages import Stage

INIT_FROM = ("backbone", "serving")  # what training starts from (GraftConfig.init_from)
TFLITE_CHOICES = {"none": (), "float": ("float",), "int8": ("int8",), "both": TFLITE_KINDS}


@dataclass(frozen=True)
class ExportSettings(ConfigSection):
    """The `export:` section: on-device (TFLite) models written beside the SavedModel, each
    checked against it on the eval split before anything is pushed."""

    tflite: str = "none"  # none | float | int8 | both
    int8_io: str = "float"  # the int8 model's input and output type: float | uint8
    representative_images: int = 200  # training images that calibrate int8 quantization
    check_images: int = 0  # eval images the check runs on; 0: the whole eval split
    float_max_drop_points: float = 1.0  # eval accuracy points the float model may lose vs the SavedModel
    int8_max_drop_points: float = 2.0
    on_failure: str = "push_without"  # a model failing its check: push_without (the version without it) | refuse

    @property
    def kinds(self) -> tuple:
        return TFLITE_CHOICES[self.tflite]

    def max_drop_points(self, kind: str) -> float:
        return self.float_max_drop_points if kind == "float" else self.int8_max_drop_points

    SECTION = "export"

    def problems(self) -> list[str]:
        problems = []
        if self.tflite not in TFLITE_CHOICES:
            problems.append(f"export.tflite must be one of {', '.join(TFLITE_CHOICES)} (got {self.tflite!r})")
        if self.int8_io not in ("float", "uint8"):
            problems.append(f"export.int8_io must be float or uint8 (got {self.int8_io!r})")
        if self.on_failure not in ("push_without", "refuse"):
            problems.append(f"export.on_failure must be push_without or refuse (got {self.on_failure!r})")
        if not isinstance(self.representative_images, int) or self.representative_images < 1:
            problems.append("export.representative_images must be an integer >= 1")
        if not isinstance(self.check_images, int) or self.check_images < 0:
            problems.append("export.check_images must be an integer >= 0 (0: the whole eval split)")
        for name in ("float_max_drop_points", "int8_max_drop_points"):
            if not isinstance(getattr(self, name), (int, float)) or not 0 <= getattr(self, name) <= 100:
                problems.append(f"export.{name} must be between 0 and 100 (accuracy points)")
        return problems


@dataclass(frozen=True)
class TrainerSettings(ComponentSettings):
    code_version: str
    backbone: str
    image_size: int
    weights: str  # imagenet | none | an absolute weights file path | a TF Hub handle
    warm_start_dir: Optional[str]  # init_from serving: the serving directory whose newest version training starts from
    # init_from serving: what served when the local pipeline was built (retrain_gate.serving_state),
    # here so that TFX's cache never hands back a Trainer that started from another served model.
    warm_start_key: str
    backbone_kwargs: dict
    dropout: float
    head_l2: Optional[float]  # None: text_tfidf_l2(training examples) for text_tfidf, else 0
    stages: tuple[Stage, ...]
    batch_size: int
    train_batchnorm: bool
    batchnorm_momentum: Optional[float]
    augmentation: list  # resolved {type, factor} items
    early_stopping_patience: int
    validation_percent: Optional[int]  # None: auto (input_pipeline.validation_percent_for)
    label_smoothing: float
    class_weights: Optional[str]
    mixed_precision: str
    allow_cpu_fallback: bool  # given GPUs TensorFlow cannot see: warn and train on the CPU, not fail
    feature_caching: bool
    feature_cache_mb: int  # frozen-stage features kept in memory up to this; beyond, no caching
    image_cache_mb: int  # decoded images cached in memory up to this
    shuffle_buffer_mb: int  # the training shuffle buffer holds at most this many bytes of images
    discriminative_lr: float
    max_tokens: int  # text_scratch
    vocab_size: int  # text_scratch
    embedding_dim: int  # text_scratch
    export: ExportSettings
    max_image_pixels: int  # images: the graph refuses larger ones (recorded for clients in assets.extra)
    max_text_chars: int  # texts: the graph reads this many characters
    class_names: Optional[list]
    seed: int

    @property
    def backbone_entry(self) -> registry.Backbone:
        return registry.get(self.backbone)
