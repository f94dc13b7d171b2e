"""Shared fixtures: real image files written by the tests themselves (no network)."""
import io
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    """uint8 image array -> encoded bytes in `fmt` (PNG, JPEG, GIF, BMP, ...), via Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def random_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A small real dataset: 3 digit classes of scikit-learn's digits as PNG class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        if label not in (0, 1, 7):
            continue
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    return str(root)
