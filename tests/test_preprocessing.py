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


def _jpeg_variants() -> dict:
    from PIL import Image

    rgb = random_image(37, 53, seed=5)
    variants = {
        "baseline": encode(rgb, "JPEG"),
        "progressive": encode(rgb, "JPEG", progressive=True),
        "no_subsampling": encode(rgb, "JPEG", subsampling=0, quality=95),
        "grayscale": encode(random_image(37, 53, 1, seed=6), "JPEG"),
    }
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, format="JPEG")
    variants["cmyk"] = buffer.getvalue()
    return variants


def test_the_decoder_gives_exactly_the_pixels_of_serving_decode_image():
    """JPEGs take tf.io.decode_jpeg (faster), everything else decode_image: the pixels must be
    the ones tf.io.decode_image (ingestion's and the device rule's decoder) gives, bit for bit."""
    from components.backbones.preprocessing import decode_image

    files = _jpeg_variants()
    files.update(
        png=encode(random_image(21, 30, 4, seed=7), "PNG"),
        gif=encode(random_image(21, 30, 1, seed=8), "GIF"),
        bmp=encode(random_image(21, 30, seed=9), "BMP"),
    )
    for name, data in files.items():
        expected = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        for limit in (None, 10_000):
            ours = decode_image(tf.constant(data), limit).numpy()
            assert ours.dtype == np.uint8 and ours.shape == expected.shape, name
            np.testing.assert_array_equal(ours, expected, err_msg=name)
        in_graph = tf.function(lambda b: decode_image(b, 10_000))(tf.constant(data)).numpy()
        np.testing.assert_array_equal(in_graph, expected, err_msg=name)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_an_image_over_the_limit_is_refused_from_its_header_in_every_format(fmt):
    from components.backbones.preprocessing import decode_image

    data = encode(random_image(20, 31, seed=1), fmt)
    assert decode_image(tf.constant(data), 20 * 31).shape == (20, 31, 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"image too large: 31x20 pixels by its header, over max_image_pixels=619"
    ):
        decode_image(tf.constant(data), 20 * 31 - 1)


def test_bytes_of_no_known_format_are_refused_by_name():
    from components.backbones.preprocessing import decode_image

    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image serving decodes"):
        decode_image(tf.constant(b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 32), 10_000)
