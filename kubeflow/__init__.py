"""Kubeflow Pipelines v2 runner settings for Graft's pipeline (see pipeline/pipeline.py)."""
