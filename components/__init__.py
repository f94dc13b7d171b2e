"""Graft's ML logic: plain functions and data, plus thin TFX adapters over them.

Keras 2 (tf_keras) is the one Keras of this project: TFT and TFMA switch TensorFlow to it on
import, and TF Hub's KerasLayer needs it. Setting the switch here, before any module of ours
imports TensorFlow, makes the import order irrelevant (the Makefile also exports it before
Python starts, so Beam worker processes agree).
"""

import os

if os.environ.get("TF_USE_LEGACY_KERAS") not in (None, "1", "true", "True"):
    raise RuntimeError(
        "Graft runs on Keras 2 (tf_keras): unset TF_USE_LEGACY_KERAS or set it to 1 "
        f"(it is {os.environ['TF_USE_LEGACY_KERAS']!r})."
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"


def __getattr__(name: str):
    """`components.RetrainDecision`, imported on first use: a custom artifact type's KFP v2 schema
    title must be `<module>.<Class>` (one dot), and TFX's Kubeflow entrypoint imports the class by
    that title (kubeflow_v2_entrypoint_utils._parse_raw_artifact)."""
    if name == "RetrainDecision":
        from components.retrain_gate.component import RetrainDecision

        return RetrainDecision
    raise AttributeError(f"module 'components' has no attribute {name!r}")
