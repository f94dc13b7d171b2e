"""Evaluator: the TFMA configuration that decides blessing (TFX's own Evaluator runs it)."""
