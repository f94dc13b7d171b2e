"""Pretrained backbones, shared by Transform (preprocessing) and the Trainer (building): the
registry as data and the one image preprocessing implementation. Plain TensorFlow/Keras, no TFX."""
