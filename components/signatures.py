"""The exported model's two serving signatures, both embedding the Transform graph.

- `serving_default`: serialized tf.Example (what TFMA and batch scoring send).
- `serving_image_bytes`: raw encoded image bytes; the input name ends in `_bytes`, so a
  TF Serving REST client sends {"b64": ...} for it.
Both return class probabilities, class index and class name.
"""
import tensorflow as tf

from components.transform_module import IMAGE_KEY

PROBABILITIES = "probabilities"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"
IMAGE_BYTES_SIGNATURE = "serving_image_bytes"


def make_signatures(model, tft_layer, image_feature_spec, class_names):
    """Concrete serving functions for `model` with the Transform layer in front of it."""
    names = tf.constant(list(class_names))

    def predict(raw_features):
        transformed = tft_layer(raw_features)
        probabilities = model(transformed[IMAGE_KEY], training=False)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {PROBABILITIES: probabilities, CLASS_ID: class_id, CLASS_NAME: tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, {IMAGE_KEY: image_feature_spec}))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")], autograph=False)
    def serve_image_bytes(image_bytes):
        shape = [-1] + [1] * len(image_feature_spec.shape)
        return predict({IMAGE_KEY: tf.reshape(image_bytes, shape)})

    return {
        "serving_default": serve_examples.get_concrete_function(),
        IMAGE_BYTES_SIGNATURE: serve_image_bytes.get_concrete_function(),
    }
