"""The real pipeline with one backbone of each preprocessing family: caffe (resnet50), none
(efficientnet_b0, which rescales inside) and a TF Hub feature vector exported by the test.
Each run's Transform graph must equal Keras' own preprocess_input, and serving must use it."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import backbones
from tests.conftest import export_tiny_hub_feature_vector, run_graft, small_training_config


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "hub"])
def test_pipeline_with_backbone(tmp_path, tiny_digits_dir, name):
    entry = backbones.get(name)
    weights = export_tiny_hub_feature_vector(str(tmp_path / "hub_fv")) if name == "hub" else "none"
    config = small_training_config(tmp_path, data_dir=tiny_digits_dir, backbone=name, weights=weights,
                                   backbone_kwargs={}, stages="frozen", epochs=2, min_accuracy=0.0,
                                   train_batchnorm=False, batchnorm_momentum=None)
    summary, output = run_graft(tmp_path, config)
    assert summary["blessed"] is True and summary["pushed_model_dir"], output
    assert f"training {name}" in output

    files = sorted(glob.glob(os.path.join(tiny_digits_dir, "*", "*.png")))[::25]
    images = [open(f, "rb").read() for f in files]
    [graph_dir] = glob.glob(str(tmp_path / "root" / "Transform" / "transform_graph" / "*"))
    transformed = tft.TFTransformOutput(graph_dir).transform_features_layer()(
        {"image": tf.constant([[b] for b in images])})["image"].numpy()
    preprocess_input = (getattr(keras.applications, entry.family).preprocess_input if entry.family
                        else lambda x: x / 255.0)
    for i, data in enumerate(images):
        resized = tf.image.resize(tf.cast(tf.io.decode_png(data, channels=3), tf.float32), [32, 32]).numpy()
        np.testing.assert_allclose(transformed[i], preprocess_input(resized), atol=1e-4)

    served = tf.saved_model.load(summary["pushed_model_dir"])
    by_bytes = served.signatures["serving_image_bytes"](image_bytes=tf.constant(images))["probabilities"].numpy()
    examples = [tf.train.Example(features=tf.train.Features(feature={"image": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[b]))})).SerializeToString() for b in images]
    by_example = served.signatures["serving_default"](examples=tf.constant(examples))["probabilities"].numpy()
    np.testing.assert_allclose(by_bytes, by_example, atol=1e-6)
    assert by_bytes.shape == (len(images), 3)
