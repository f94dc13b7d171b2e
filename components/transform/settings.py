"""Transform's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ComponentSettings


@dataclass(frozen=True)
class TransformSettings(ComponentSettings):
    code_version: str
    backbone: str
    image_size: int
    max_image_pixels: int  # images: larger ones (by their header) are refused, at training and serving
    lowercase: bool  # text
    max_text_chars: int  # text: characters read of each text, at training and serving alike
    max_tokens: int  # text_scratch, hub_bert: token ids per text
    vocab_size: int  # text_scratch
    text_preprocessor: str  # hub_bert: the TF Hub preprocessing model's handle
