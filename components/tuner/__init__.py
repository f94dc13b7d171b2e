"""The Tuner stage: TFX's Tuner (KerasTuner's search loop) over Graft's own training stages."""
