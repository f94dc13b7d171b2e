"""Messy image folders and faults, through the real pipeline: every file accounted for,
clear errors, nothing half-done."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import (
    assert_signatures_agree,
    assert_transform_matches_keras,
    encode,
    graft_cli,
    random_image,
    run_graft,
    serving_version_of_classes,
    small_training_config,
    transform_graph_dir,
    write_digit_pngs,
)

SECRET = "graft-test-secret-7f3a9c"
MAX_PIXELS = 1_000_000


def _pil_bytes(image, fmt, **kwargs):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def make_messy_dataset(root, outside):
    """Good digits in three classes (one with a space, one non-ASCII) plus every messy case.
    Returns {relative path: case name} for the messy files."""
    from PIL import Image

    good = write_digit_pngs(root, {"digit one": 1, "zwölf": 2, "zero": 0}, 75)
    cases = {}

    def put(rel, data, case):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        cases[rel] = case

    jpeg = encode(random_image(40, 40), "JPEG")
    png = encode(random_image(40, 40), "PNG")
    put("zero/corrupt.jpg", jpeg[:20] + b"\x00garbage\xff" * 30, "corrupt JPEG")
    put("zero/truncated.png", png[: len(png) // 2], "truncated PNG")
    put("zero/empty.jpg", b"", "zero-byte file")
    put("zero/notes.jpg", b"these are my notes, not an image\n", "text file named .jpg")
    put("zero/gray.png", encode(random_image(30, 30, 1), "PNG"), "grayscale PNG")
    put("zero/rgba.png", encode(random_image(30, 30, 4), "PNG"), "RGBA PNG")
    put("zero/palette.png", _pil_bytes(Image.fromarray(random_image(30, 30)).convert("P"), "PNG"), "palette PNG")
    put(
        "zero/sixteen_bit.png",
        _pil_bytes(Image.fromarray((random_image(30, 30, 1).astype(np.uint16) * 257), "I;16"), "PNG"),
        "16-bit PNG",
    )
    put("zero/cmyk.jpg", _pil_bytes(Image.fromarray(random_image(30, 30)).convert("CMYK"), "JPEG"), "CMYK JPEG")
    frames = [Image.fromarray(random_image(20, 20, 1, seed=s)) for s in range(3)]
    put("zero/animated.gif", _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]), "animated GIF")
    put("zero/image.bmp", encode(random_image(30, 30), "BMP"), "BMP")
    put("zero/image.webp", _pil_bytes(Image.fromarray(random_image(30, 30)), "WEBP"), "WebP")
    put("zero/bomb.png", encode(np.zeros((1500, 1500), np.uint8), "PNG"), "decompression bomb (header 1500x1500)")
    put("zero/.DS_Store", b"\x00\x00\x00\x01Bud1", ".DS_Store")
    put("zero/Thumbs.db", b"\xd0\xcf\x11\xe0", "Thumbs.db")
    put("zero/.hidden.png", png, "hidden file")
    put("loose.png", png, "file directly under the data root")
    with open(good[0], "rb") as f:
        put("zero/duplicate.png", f.read(), "duplicate image (same bytes)")
    os.makedirs(os.path.join(root, "empty class"))
    cases["empty class/"] = "empty class folder"
    os.symlink(os.path.join(root, "loose.png"), os.path.join(root, "zero", "link_inside.png"))
    cases["zero/link_inside.png"] = "symlink inside the data root"
    with open(outside, "wb") as f:
        f.write(encode(random_image(30, 30), "PNG"))
    os.symlink(outside, os.path.join(root, "zero", "link_outside.png"))
    cases["zero/link_outside.png"] = "symlink outside the data root"
    return cases, good


def _serving_decoder_accepts(path):
    try:
        tf.io.decode_image(open(path, "rb").read(), channels=3, expand_animations=False)
        return True
    except tf.errors.InvalidArgumentError:
        return False


@pytest.mark.e2e
def test_messy_folder_every_file_accounted_for(tmp_path):
    """Every file of a messy folder accepted, quarantined or skipped, with its reason; the model
    trained on it serves. The run also trains under mixed precision (float16 compute on this CPU)
    and serves in float32 all through (one pipeline run for both: each costs the suite a minute)."""
    root = tmp_path / "messy"
    cases, good = make_messy_dataset(str(root), str(tmp_path / "outside.png"))
    # resnet50: the caffe preprocessing family runs through the pipeline here (unit: the run-local test in test_kubeflow).
    config = small_training_config(
        tmp_path,
        data_dir=str(root),
        stages="frozen",
        epochs=1,
        min_head_steps=0,  # 1 epoch: the ingest accounting is the point, not the head
        learning_rate=0.01,
        min_accuracy=0.0,
        max_image_pixels=MAX_PIXELS,
        backbone="resnet50",
        backbone_kwargs={},
        train_batchnorm=False,
        batchnorm_momentum=None,
        mixed_precision="mixed_float16",  # float16 compute on this CPU: the served model must not be
    )
    summary, output = run_graft(tmp_path, config, env={"AWS_SECRET_ACCESS_KEY": SECRET, "GRAFT_TEST_TOKEN": SECRET})
    ingest = summary["ingest"]
    files_on_disk = [p for p in glob.glob(str(root) + "/**", recursive=True) if os.path.isfile(p) or os.path.islink(p)]
    files_on_disk += glob.glob(str(root) + "/**/.*", recursive=True)
    seen = len(set(files_on_disk))
    assert ingest["total"] == seen == ingest["accepted"] + len(ingest["quarantined"]) + ingest["skipped"]

    quarantined = {q["path"]: q["reason"] for q in ingest["quarantined"]}
    report = json.load(open(os.path.join(os.path.dirname(summary["report"]), "summary.json")))
    skipped = {}
    with open(
        glob.glob(str(tmp_path / "root" / "ImageExampleGen" / "examples" / "*" / "ingest" / "report.json"))[0]
    ) as f:
        skipped = {s["path"]: s["reason"] for s in json.load(f)["skipped_files"]}
    outcomes = {}
    for rel, case in cases.items():
        if rel in quarantined:
            outcomes[case] = ("quarantined", quarantined[rel])
        elif rel in skipped:
            outcomes[case] = ("skipped", skipped[rel])
        else:
            outcomes[case] = ("accepted", "")
    table = "\n".join(f"| {case} | {outcome} | {message} |" for case, (outcome, message) in outcomes.items())
    (tmp_path / "outcomes.md").write_text(table)
    print("\n" + table)

    assert outcomes["zero-byte file"] == ("quarantined", "empty file")
    for case in ("corrupt JPEG", "truncated PNG", "text file named .jpg"):
        assert outcomes[case][0] == "quarantined" and "not decodable" in outcomes[case][1], case
    assert outcomes["decompression bomb (header 1500x1500)"] == (
        "quarantined",
        f"image too large: 1500x1500 pixels exceeds max_image_pixels={MAX_PIXELS}",
    )
    for case in ("grayscale PNG", "RGBA PNG", "palette PNG", "animated GIF", "BMP", "symlink inside the data root"):
        assert outcomes[case][0] == "accepted", case
    for rel in ("zero/cmyk.jpg", "zero/image.webp", "zero/sixteen_bit.png"):  # exactly as serving decodes
        expected = "accepted" if _serving_decoder_accepts(os.path.join(root, rel)) else "quarantined"
        assert outcomes[cases[rel]][0] == expected, rel
    assert outcomes[".DS_Store"] == outcomes["Thumbs.db"] == ("skipped", "OS metadata file")
    assert outcomes["hidden file"] == ("skipped", "hidden file")
    assert outcomes["file directly under the data root"] == ("skipped", "not in a class folder")
    assert outcomes["symlink outside the data root"] == ("skipped", "symlink outside the data root")
    assert outcomes["duplicate image (same bytes)"][0] == "skipped"
    assert "duplicate of" in outcomes["duplicate image (same bytes)"][1]
    assert ingest["class_names"] == ["digit one", "zero", "zwölf"]  # the empty folder is no class
    assert report["ingest"] == ingest

    # The caffe preprocessing family: Transform is Keras' resnet50 preprocess_input, serving uses it.
    assert "training resnet50" in output
    assert_transform_matches_keras(transform_graph_dir(tmp_path / "root"), "resnet50", good[::40], 32)
    assert_signatures_agree(summary["pushed_model_dir"], good[::40], 3)

    # The accounting is in ML Metadata too, as properties of the examples artifact.
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config["metadata_path"]
    store = metadata_store.MetadataStore(connection)
    [examples] = [a for a in store.get_artifacts_by_type("Examples") if "ImageExampleGen" in a.uri]
    props = {k: v.int_value for k, v in examples.custom_properties.items() if k.startswith("ingest_")}
    assert props == {
        "ingest_total": ingest["total"],
        "ingest_accepted": ingest["accepted"],
        "ingest_quarantined": len(ingest["quarantined"]),
        "ingest_skipped": ingest["skipped"],
    }
    assert "zero/notes.jpg" in open(summary["report"], encoding="utf-8").read()

    # No credential from the environment leaks into logs, reports or summaries.
    for path in [summary["log_file"], *glob.glob(os.path.dirname(summary["report"]) + "/*")]:
        if path.endswith((".log", ".json", ".html")):
            assert SECRET not in open(path, encoding="utf-8", errors="replace").read(), path

    # Trained under mixed precision, served in float32 all through (it passed the fresh-process
    # serving check before the push).
    assert "precision mixed_float16" in open(summary["log_file"]).read()
    model = tf.saved_model.load(summary["pushed_model_dir"])
    for name, signature in model.signatures.items():
        assert {o.dtype for o in signature.structured_outputs.values() if o.dtype.is_floating} == {tf.float32}, name
        graph = signature.graph.as_graph_def()
        ops = [n for f in graph.library.function for n in f.node_def] + list(graph.node)
        assert not [n.name for n in ops if n.attr["T"].type == tf.float16.as_datatype_enum], name

    # Serving: malformed bytes fail that request with a clear error; the process serves on.
    image = open(good[0], "rb").read()
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image serving decodes"):
        model.signatures["serving_image_bytes"](image_bytes=tf.constant([image, b"not an image"]))
    ok = model.signatures["serving_image_bytes"](image_bytes=tf.constant([image]))
    assert ok["probabilities"].shape == (1, 3)


@pytest.mark.e2e
def test_too_much_quarantined_stops_before_training(tmp_path):
    root = tmp_path / "data"
    write_digit_pngs(str(root), {"a": 0, "b": 1}, 20)
    for i in range(5):
        (root / "a" / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff broken %d" % i)
    summary, output = run_graft(tmp_path, small_training_config(tmp_path, data_dir=str(root)), expect_rc=1)
    assert "error in ImageExampleGen: 5 of 45 images (11.1%) were quarantined" in output
    assert "Worst folders: a (5)" in output
    assert "Trainer ..." not in output


def test_class_set_differing_from_serving_model_is_refused(tmp_path):
    write_digit_pngs(str(tmp_path / "data"), {"a": 0, "b": 1}, 6)
    serving_version_of_classes(tmp_path / "serving", ["a", "b", "c"])
    result, seconds = graft_cli(
        "--data-dir", str(tmp_path / "data"), "--weights", "none", "--serving-dir", str(tmp_path / "serving")
    )
    assert result.returncode == 2, result.stderr
    assert "added none, removed ['c']" in result.stderr and "allow_class_change" in result.stderr
    assert seconds < 5, seconds


def test_structural_problems_are_refused_before_tfx(tmp_path):
    presplit = tmp_path / "presplit"
    write_digit_pngs(str(presplit / "train"), {"a": 0, "b": 1}, 6)
    (presplit / "eval" / "a").mkdir(parents=True)
    result, seconds = graft_cli("--data-dir", str(presplit), "--weights", "none")
    assert result.returncode == 2 and "this split is empty" in result.stderr
    assert seconds < 5, seconds

    few = tmp_path / "few"
    write_digit_pngs(str(few), {"a": 0, "b": 1}, 6)
    for extra in sorted(os.listdir(few / "b"))[2:]:
        os.remove(few / "b" / extra)
    result, _ = graft_cli("--data-dir", str(few), "--weights", "none")
    assert result.returncode == 2 and "fewer than min_images_per_class=5 files: b (2)" in result.stderr

    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes(encode(random_image(8, 8), "PNG"))
    result, _ = graft_cli("--data-dir", str(flat), "--weights", "none")
    assert result.returncode == 2 and "no images found; expected one sub-folder per class" in result.stderr
