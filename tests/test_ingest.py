import os

import numpy as np
import pytest

from components.example_gen import image_ingest as ingest
from components.example_gen.image_executor import split_root_of
from components.example_gen.ingest_report import IngestError, check_quarantine
from tests.conftest import encode, random_image

MAX_PIXELS = 50_000_000


def test_listing_applies_rules_and_accounts_for_every_file(tmp_path):
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "nested").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / ".hidden_class").mkdir()
    png = encode(random_image(4, 4), "PNG")
    (root / "cat" / "a.png").write_bytes(png)
    (root / "cat" / ".DS_Store").write_bytes(b"x")
    (root / "cat" / "Thumbs.db").write_bytes(b"x")
    (root / "cat" / ".secret.png").write_bytes(png)
    (root / "dog" / "nested" / "b.png").write_bytes(png)
    (root / "loose.png").write_bytes(png)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png)
    os.symlink(outside, root / "dog" / "link_out.png")
    os.symlink(root / "cat" / "a.png", root / "dog" / "link_in.png")

    listing = ingest.list_split(str(root))
    assert listing.files == [("cat/a.png", "cat"), ("dog/link_in.png", "dog"), ("dog/nested/b.png", "dog")]
    reasons = {s["path"]: s["reason"] for s in listing.skipped}
    assert reasons == {
        "loose.png": "not in a class folder",
        ".hidden_class/": "hidden folder",
        "cat/.DS_Store": "OS metadata file",
        "cat/Thumbs.db": "OS metadata file",
        "cat/.secret.png": "hidden file",
        "dog/link_out.png": "symlink outside the data root",
    }
    assert listing.empty_classes == ["empty"]
    assert listing.classes == ["cat", "dog"]


def test_presplit_layout_is_detected(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    assert ingest.detect_split_roots(str(tmp_path)) is None
    (tmp_path / "eval" / "a").mkdir(parents=True)
    assert ingest.detect_split_roots(str(tmp_path)) == ["train", "eval"]


def test_split_root_of_patterns():
    assert split_root_of("*/*") == ""
    assert split_root_of("train/*/*") == "train"
    assert split_root_of("span-3/eval/*/*") == "span-3/eval"


@pytest.mark.parametrize("fmt,channels", [("PNG", 3), ("PNG", 1), ("PNG", 4), ("JPEG", 3), ("GIF", 3), ("BMP", 3)])
def test_decodable_formats_are_accepted(fmt, channels):
    image = random_image(10, 12, channels)
    if fmt == "GIF" and channels == 3:
        image = random_image(10, 12, 1)
    assert ingest.inspect_image(encode(image, fmt), MAX_PIXELS) is None


def test_bad_files_are_quarantined_with_reasons():
    jpeg = encode(random_image(32, 32), "JPEG")
    assert ingest.inspect_image(b"", MAX_PIXELS) == "empty file"
    assert "not decodable" in ingest.inspect_image(b"hello, I am text\n", MAX_PIXELS)
    assert "not decodable" in ingest.inspect_image(jpeg[:40], MAX_PIXELS)
    png = encode(random_image(32, 32), "PNG")
    assert "not decodable" in ingest.inspect_image(png[: len(png) // 2], MAX_PIXELS)


def test_decompression_bomb_rejected_from_header():
    big = encode(np.zeros((3000, 3000), np.uint8), "PNG")  # compresses to a few KB
    assert ingest.inspect_image(big, max_pixels=1_000_000).startswith("image too large: 3000x3000")
    assert ingest.inspect_image(big, max_pixels=10_000_000) is None


def test_quarantine_above_limit_names_worst_folders():
    report = {"accepted": 90, "quarantined": [{"path": "cat/a.jpg"}] * 8 + [{"path": "dog/b.jpg"}] * 2}
    with pytest.raises(IngestError, match=r"10 of 100 images \(10.0%\).*cat \(8\), dog \(2\)"):
        check_quarantine(report, 0.05)
    check_quarantine(report, 0.10)
