import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.backbones import registry as backbones
from components.backbones.preprocessing import preprocess_image_bytes
from tests.conftest import encode, random_image

SIZES = [(17, 23), (64, 64), (100, 41)]


@pytest.mark.parametrize("name", [n for n in backbones.names() if backbones.get(n).kind == "image"])
def test_matches_keras_preprocess_input(name):
    entry = backbones.get(name)
    preprocess_input = (
        getattr(keras.applications, entry.family).preprocess_input if entry.family else lambda x: x / 255.0
    )  # TF Hub image models take [0, 1]
    size = 48
    encoded = [encode(random_image(h, w, seed=h * w), "PNG") for h, w in SIZES]
    ours = preprocess_image_bytes(tf.constant(encoded), entry, size).numpy()
    for i, data in enumerate(encoded):
        decoded = tf.io.decode_png(data, channels=3)
        resized = tf.image.resize(tf.cast(decoded, tf.float32), [size, size]).numpy()
        expected = preprocess_input(resized.copy())
        np.testing.assert_allclose(ours[i], expected, atol=1e-4)
    assert ours.shape == (len(SIZES), size, size, 3)


def test_formats_decode_to_three_channels():
    gray = encode(random_image(9, 9, 1), "PNG")
    rgba = encode(random_image(9, 9, 4), "PNG")
    gif = encode(random_image(9, 9, 1), "GIF")
    bmp = encode(random_image(9, 9), "BMP")
    jpeg = encode(random_image(9, 9), "JPEG")
    out = preprocess_image_bytes(tf.constant([gray, rgba, gif, bmp, jpeg]), "mobilenet_v2", 32)
    assert out.shape == (5, 32, 32, 3)
    assert float(tf.reduce_min(out)) >= -1.0 and float(tf.reduce_max(out)) <= 1.0
