"""ImageExampleGen: image folders to tf.Examples, every file accounted for (TFX adapter + rules)."""
