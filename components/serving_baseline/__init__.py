"""ServingBaseline: the model now serving, as the Evaluator's baseline (custom TFX component)."""
