"""The exported SavedModel: the serving signatures, both embedding the Transform graph, class
names and the serving-check data in assets.extra.

- `serving_default`: serialized tf.Example (what TFMA and batch scoring send).
- `serving_image_bytes`: raw encoded image bytes; the input name ends in `_bytes`, so a
  TF Serving REST client sends {"b64": ...} for it. For text: `serving_text`, UTF-8 strings.
Both return class probabilities, class index and class name.
- `serving_pixels`: float32 [batch, size, size, 3], RGB in [0, 255], already decoded and
  resized (the bilinear resize of the Transform graph); the backbone's normalisation is inside.
  Returns probabilities only. The TFLite models are converted from it: decoding and
  tf.Example parsing need Flex ops on a device, this does not.
- `serving_embedding`: serialized tf.Example in, `embedding` out: the features the head reads
  (the drift checks compare new data with old in this space).
"""

from __future__ import annotations

import json
import os
import uuid

import tensorflow as tf
import tf_keras as keras

from components.backbones.preprocessing import scale_pixels
from components.contract import (
    CLASS_ID,
    CLASS_NAME,
    CLASS_NAMES_FILE,
    EMBEDDING_OUTPUT,
    EMBEDDING_SIGNATURE,
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    EXTRA_DIR,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    PROBABILITIES,
    RAW_FEATURE,
    RAW_INPUT,
    RAW_SIGNATURE,
    SERVING_LIMITS_FILE,
)
from components.files import tfrecords
from components.serving.check import write_check_data
from components.trainer.model import OUTPUT_LAYER, architecture_only, build_model, load_weights_only


def make_signatures(model, tft_layer, raw_feature_spec, class_names, settings):
    """Concrete serving functions for `model` with the Transform layer in front of it (and,
    for pixels, the backbone's normalisation alone). The model is traced once, in `forward`,
    which every signature calls: each signature tracing it anew cost seconds of every export."""
    names = tf.constant(list(class_names))
    kind = settings.backbone_entry.kind
    feature = RAW_FEATURE[kind]
    # The features the head reads (the embedding signature: drift in the model's own view) and
    # the probabilities, from one pass.
    both = keras.Model(model.inputs, [model.get_layer(OUTPUT_LAYER).input, model.outputs[0]])
    model_input = model.inputs[0]

    @tf.function(input_signature=[tf.TensorSpec(model_input.shape, model_input.dtype)], autograph=False)
    def forward(inputs):
        embedding, probabilities = both(inputs, training=False)
        return tf.cast(embedding, tf.float32), probabilities

    def predict(raw_features):
        _, probabilities = forward(tft_layer(raw_features)[feature])
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {PROBABILITIES: probabilities, CLASS_ID: class_id, CLASS_NAME: tf.gather(names, class_id)}

    def parse(examples):
        return tf.io.parse_example(examples, {feature: raw_feature_spec})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def serve_examples(examples):
        return predict(parse(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False)
    def serve_embedding(examples):
        embedding, _ = forward(tft_layer(parse(examples))[feature])
        return {EMBEDDING_OUTPUT: embedding}

    # Raw input: encoded image bytes (the name ends in `_bytes`: TF Serving's REST API takes
    # {"b64": ...}) or UTF-8 texts.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=RAW_INPUT[kind])], autograph=False)
    def serve_raw(raw):
        shape = [-1] + [1] * len(raw_feature_spec.shape)
        return predict({feature: tf.reshape(raw, shape)})

    signatures = {
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        RAW_SIGNATURE[kind]: serve_raw.get_concrete_function(),
        EMBEDDING_SIGNATURE: serve_embedding.get_concrete_function(),
    }
    if kind == "image":
        size, mode = settings.image_size, settings.backbone_entry.preprocess

        @tf.function(
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=PIXELS_INPUT)], autograph=False
        )
        def serve_pixels(pixels):
            return {PROBABILITIES: forward(scale_pixels(pixels, mode))[1]}

        signatures[PIXELS_SIGNATURE] = serve_pixels.get_concrete_function()
    return signatures


def float32_twin(model, settings, num_classes: int):
    """`model` rebuilt in float32 with its trained weights (the variables are float32 under
    mixed precision already), or `model` itself when it computes in float32. Served signatures
    then compute and return float32 on any device: a float16 graph answers differently on a GPU
    and on the CPU of a Pusher (or a TF Serving replica), and the serving check compares them."""
    if keras.mixed_precision.global_policy().compute_dtype == "float32":
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = build_model(architecture_only(settings), num_classes)  # the weights are copied over
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy_weights(model, twin)
    return twin


def copy_weights(source, target) -> None:
    """`source`'s weights into `target` (the same architecture, built again), matched as a
    checkpoint matches them: by each variable's place in the model's object graph. Not by list
    position (a model lists its trainable weights first, so the order follows what trained last:
    a BERT encoder stopped at `trainable: N`), nor by variable name (Keras numbers unnamed layers
    per session: EfficientNet's `normalization_1` in one model is `normalization_2` in its twin)."""
    folder = f"ram://graft-weights-{uuid.uuid4().hex}"
    try:
        source.save_weights(f"{folder}/weights")
        load_weights_only(target, f"{folder}/weights")
    except AssertionError as error:
        raise ValueError(f"cannot match the trained model's weights to its rebuilt twin: {error}") from None
    finally:
        if tf.io.gfile.exists(folder):  # a save that failed before writing keeps its own error
            tf.io.gfile.rmtree(folder)


def export_model(model, tft_output, class_names, export_dir: str, settings) -> None:
    """SavedModel with the serving signatures; class names also in assets.extra."""
    tft_layer = tft_output.transform_features_layer()
    model.tft_layer = tft_layer  # tracked, so the Transform graph's assets are saved with the model
    feature = RAW_FEATURE[settings.backbone_entry.kind]
    signatures = make_signatures(model, tft_layer, tft_output.raw_feature_spec()[feature], class_names, settings)
    # save_traces=False: only signatures are served; tracing every layer's call cost ~30 s.
    # include_optimizer=False: serving and a warm start (load_weights_only) never read its slots,
    # and writing them tripled the variables the checkpoint's save graph is built for.
    model.save(export_dir, save_format="tf", signatures=signatures, save_traces=False, include_optimizer=False)
    extra = os.path.join(export_dir, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, CLASS_NAMES_FILE), "w") as f:
        json.dump(list(class_names), f, ensure_ascii=False)
    with tf.io.gfile.GFile(os.path.join(extra, SERVING_LIMITS_FILE), "w") as f:
        json.dump(serving_limits(settings), f)


def serving_limits(settings) -> dict:
    """What the served graph refuses or cuts, for clients (graft predict applies the same)."""
    if settings.backbone_entry.kind == "image":
        return {"max_image_pixels": settings.max_image_pixels}
    return {"max_text_chars": settings.max_text_chars}


def save_serving_check(model, tft_output, eval_files, export_dir: str, kind: str = "image", count: int = 8) -> None:
    """The Trainer's own predictions on a few eval examples, for the Pusher's serving check."""
    feature = RAW_FEATURE[kind]
    files = [f for p in eval_files for f in tf.io.gfile.glob(p)]
    records = tfrecords(files).take(count)
    raw = [tf.train.Example.FromString(r.numpy()).features.feature[feature].bytes_list.value[0] for r in records]
    transformed = tft_output.transform_features_layer()({feature: tf.constant([[b] for b in raw])})
    with tf.device("/CPU:0"):  # as the Pusher's fresh process computes (no TF32 or GPU kernels)
        predictions = model(transformed[feature], training=False).numpy()
    write_check_data(export_dir, raw, predictions, kind)
