"""ExampleGen's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.settings import ComponentSettings


@dataclass(frozen=True)
class ExampleGenSettings(ComponentSettings):
    code_version: str
    max_image_pixels: int
    max_quarantine_fraction: float
    min_images_per_class: int
    data_fingerprint: str  # every file under the data folder at any depth (image_ingest.tree_fingerprint)
    text_rules: Optional[dict]  # text input: text_ingest.TextRules as data; None for images
