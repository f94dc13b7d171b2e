"""The bundled sample: scikit-learn's handwritten digits (1,797 8x8 images, shipped inside
the package, so no network) written out as PNG files in one folder per class."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DEFAULT_DIR = os.path.join("data", "digits")


def write_digits(target: str = DEFAULT_DIR, per_class: int | None = None) -> str:
    """Writes <target>/<digit>/<index>.png once; returns target. `per_class` caps the count."""
    marker = target.rstrip("/") + ".complete"  # beside the data, not inside it
    if os.path.exists(marker):
        return target
    digits = load_digits()
    written = {}
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        if per_class is not None and written.get(label, 0) >= per_class:
            continue
        folder = os.path.join(target, str(label))
        os.makedirs(folder, exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{index:04d}.png"))
        written[label] = written.get(label, 0) + 1
    open(marker, "w").close()
    return target


if __name__ == "__main__":
    print(f"sample data in {write_digits()}")
