"""ExampleGen's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.example_gen.text_ingest import TextRules
from components.settings import ComponentSettings


@dataclass(frozen=True)
class ExampleGenSettings(ComponentSettings):
    code_version: str
    max_image_pixels: int
    max_quarantine_fraction: float
    min_images_per_class: int
    data_fingerprint: str  # every file under the data folder at any depth (image_ingest.tree_fingerprint)
    text_rules: Optional[TextRules]  # text input; None for images
    # The golden set (eval_data): the training data's ExampleGen drops what is also in it (never
    # trained on) and fingerprints it, so an edit there runs ExampleGen again; None without one.
    golden_data: Optional[str]
    golden_fingerprint: str
    # Set on the golden set's own ExampleGen: labels are indexed by the training classes (a class
    # outside them is refused) and min_images_per_class, a training rule, does not apply.
    class_names: Optional[list]
