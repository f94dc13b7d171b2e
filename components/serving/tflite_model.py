"""A Graft TFLite model as a device runs it: the client-side preprocessing, and the interpreter.

What the device does before calling the model (also written to `tflite/client.json`):
decode the image to RGB (3 channels), resize it to the model's size x size with bilinear
interpolation (half-pixel centres, no antialiasing: TensorFlow 2's `tf.image.resize`), keep the
values in [0, 255] as float32 (or round them to uint8 for an int8 model with uint8 input). The
backbone's normalisation is inside the model. The output is one probability per class, in the
order of `tflite/labels.txt`.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from components.backbones.preprocessing import decode_image, resize


def client_contract(
    image_size: int, input_dtypes: dict, input_quantization: dict | None = None, max_image_pixels: int | None = None
) -> dict:
    """The preprocessing a device must do, as data (the sidecar `client.json`);
    `input_dtypes`: {model file: its input dtype}; `input_quantization`: {model file: {scale,
    zero_point}} for models with an integer input (Graft pins them to scale 1, zero point 0)."""
    return {
        "max_image_pixels": max_image_pixels,  # refuse larger images from their header, before decoding
        "input": {
            "shape": [1, image_size, image_size, 3],
            "channels": "RGB",
            "dtype": input_dtypes,
            "quantization": input_quantization or {},
        },
        "decode": "to RGB, 3 channels (grey and RGBA images converted); the first frame of a GIF",
        "resize": {
            "size": [image_size, image_size],
            "method": "bilinear",
            "half_pixel_centers": True,
            "antialias": False,
            "keep_aspect_ratio": False,
        },
        "value_range": [0, 255],
        "uint8_input": "q = clip(round(value / scale + zero_point), 0, 255) with the model's input quantization "
        "(scale 1, zero point 0: the resized values rounded to the nearest integer)",
        "normalisation": "inside the model",
        "output": "probabilities, one per class, in the order of labels.txt",
    }


def client_pixels(image_bytes: bytes, image_size: int, max_pixels: int | None = None) -> np.ndarray:
    """One encoded image -> float32 [size, size, 3] in [0, 255], as the device must prepare it:
    the same decode (and header limit) and resize as the Transform graph, without the normalisation."""
    return resize(decode_image(tf.constant(image_bytes), max_pixels), image_size).numpy()


class TFLiteClassifier:
    """A .tflite classifier on the TFLite interpreter, float or quantized input and output."""

    def __init__(self, path: str | None = None, content: bytes | None = None):
        self.interpreter = tf.lite.Interpreter(model_path=path, model_content=content, num_threads=1)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.input_dtype = np.dtype(self._input["dtype"]).name
        scale, zero_point = self._input["quantization"]
        # An integer input's quantization: what a device applies to the 0-255 pixel values.
        self.input_quantization = (
            {"scale": float(scale), "zero_point": int(zero_point)} if self._input["dtype"] != np.float32 else None
        )

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [size, size, 3] pixels in [0, 255] -> float32 [classes], one image at a time
        (as a device calls it); quantized input and output are converted with their scales."""
        batch = pixels[np.newaxis].astype(np.float32)
        scale, zero_point = self._input["quantization"]
        if self._input["dtype"] != np.float32:
            info = np.iinfo(self._input["dtype"])
            batch = np.clip(np.round(batch / (scale or 1.0) + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self._input["index"], batch.astype(self._input["dtype"]))
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self._output["index"])[0]
        scale, zero_point = self._output["quantization"]
        if self._output["dtype"] != np.float32:
            output = (output.astype(np.float32) - zero_point) * scale
        return output.astype(np.float32)

    def classify(self, pixels_list) -> tuple[np.ndarray, float]:
        """(probabilities [n, classes], milliseconds per image) over `pixels_list`."""
        started = time.perf_counter()
        rows = [self.probabilities(p) for p in pixels_list]
        elapsed = time.perf_counter() - started
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32), 1000 * elapsed / max(1, len(rows))
