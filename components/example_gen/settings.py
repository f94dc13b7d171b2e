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
