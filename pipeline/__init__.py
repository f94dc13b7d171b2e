"""Graft's pipeline wiring and command line: TFX components from one validated GraftConfig."""

import components  # noqa: F401  (sets Keras 2 before anything imports TensorFlow)
