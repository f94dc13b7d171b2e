"""Transform's preprocessing_fn: a thin adapter over `preprocess_image_bytes`.

Transform runs with materialize=False: decoded float images would be ~34x the encoded bytes
on disk. The Trainer applies this same graph inside its input pipeline, and the serving
signatures embed it, so there is exactly one preprocessing graph.
"""

import tensorflow as tf

from components.backbones.preprocessing import preprocess_image_bytes
from components.contract import IMAGE_KEY, LABEL_KEY
from components.transform.settings import TransformSettings


def preprocessing_fn(inputs, custom_config):
    settings = TransformSettings.from_dict(custom_config)
    outputs = {IMAGE_KEY: preprocess_image_bytes(inputs[IMAGE_KEY], settings.backbone, settings.image_size)}
    if LABEL_KEY in inputs:
        outputs[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs
