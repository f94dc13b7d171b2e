"""The Pusher's slice of GraftConfig (its custom_config), typed."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import ComponentSettings


@dataclass(frozen=True)
class PusherSettings(ComponentSettings):
    keep_versions: int
    tflite_on_failure: str  # push_without | refuse: what a TFLite model that failed its check does to the push
    resolved_config: dict  # the whole resolved config, recorded in each pushed version's provenance
    code_version: str  # the code the pipeline was compiled from (components.serving.provenance.code_version)
