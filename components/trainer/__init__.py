"""Trainer: run_fn (TFX adapter) over plain Keras code: model, stages, schedules, augmentation,
training loop, export."""
