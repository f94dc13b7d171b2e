"""Transform: the preprocessing_fn, one graph for training and serving (TFX adapter)."""
