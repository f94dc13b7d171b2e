"""New data lands as a new span folder; each run (scheduled on Kubeflow, or local) trains on
the newest one through TFX's {SPAN} input pattern. The run uses efficientnet_b0 (preprocessing
'none': the model rescales inside), whose Transform graph must equal Keras' preprocess_input."""

import pytest

from tests.conftest import (
    assert_signatures_agree,
    assert_transform_matches_keras,
    run_graft,
    small_training_config,
    write_digit_pngs,
)


@pytest.mark.e2e
def test_run_takes_the_newest_span(tmp_path):
    data = tmp_path / "data"
    write_digit_pngs(str(data / "span-1"), {"a": 0, "b": 1}, 10)
    newest = write_digit_pngs(str(data / "span-2"), {"a": 0, "b": 1}, 25)
    config = small_training_config(
        tmp_path,
        data_dir=str(data),
        spans=True,
        stages="frozen",
        epochs=1,
        min_accuracy=0.0,
        backbone="efficientnet_b0",
        backbone_kwargs={},
        train_batchnorm=False,
        batchnorm_momentum=None,
    )
    summary, output = run_graft(tmp_path, config)
    assert summary["ingest"]["total"] == summary["ingest"]["accepted"] == len(newest)
    assert "training efficientnet_b0" in output and summary["pushed_model_dir"]
    assert_transform_matches_keras(tmp_path / "root", "efficientnet_b0", newest[::10], 32)
    assert_signatures_agree(summary["pushed_model_dir"], newest[::10], 2)

    assert _examples_span(config["metadata_path"]) == 2  # resolved by TFX's driver


def _examples_span(metadata_path: str) -> int:
    """The span recorded on the run's examples artifact in ML Metadata."""
    [examples] = _examples(metadata_path)
    return examples.custom_properties["span"].int_value


@pytest.mark.e2e
def test_text_run_takes_the_newest_span(tmp_path):
    """Texts as cumulative spans: a folder of span-<N>/ folders (here a table in each); each run
    reads the newest, the examples artifact records its span, and a text keeps its split in
    every later span (as the model reads it: span 2 rewrites some of span 1's texts in another
    case or spacing), so the serving model is never scored on its own training texts."""
    from tests.test_text_e2e import config as text_config
    from tests.test_text_e2e import sample_rows, write_table

    rows = sample_rows(1200)
    data = tmp_path / "texts"
    (data / "span-1").mkdir(parents=True)
    write_table(str(data / "span-1" / "reviews.csv"), rows[:600])
    config = text_config(tmp_path, "spans", str(data), spans=True, min_accuracy=0.55)
    first, _ = run_graft(tmp_path, config, "spans")
    print(f"\nspan 1: eval accuracy {first['metrics']['sparse_categorical_accuracy']:.3f}")
    assert first["blessed"] and _examples_span(config["metadata_path"]) == 1

    rewritten = [{**r, "text": "  " + r["text"].upper()} if i % 3 == 0 else r for i, r in enumerate(rows[:600])]
    (data / "span-2").mkdir()
    write_table(str(data / "span-2" / "reviews.csv"), rewritten + rows[600:])
    second, _ = run_graft(tmp_path, config, "spans")
    ingest = second["ingest"]
    assert ingest["accepted"] + ingest["skipped"] == 1200 and len(ingest["quarantined"]) == 4  # span-2 alone
    assert second["metrics"]["sparse_categorical_accuracy"] >= 0.55
    assert {a.custom_properties["span"].int_value for a in _examples(config["metadata_path"])} == {1, 2}

    splits = [_model_text_splits(a.uri) for a in _examples(config["metadata_path"])]
    common = set(splits[0]) & set(splits[1])
    assert len(common) > 500  # span 1's texts, as the model reads them, are all in span 2
    assert all(splits[0][t] == splits[1][t] for t in common)


def _examples(metadata_path: str) -> list:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    return sorted(metadata_store.MetadataStore(connection).get_artifacts_by_type("Examples"), key=lambda a: a.id)


def _model_text_splits(uri: str) -> dict:
    """{text as the model reads it (lowercase, as the test config): split} of an examples artifact."""
    import glob
    import os

    import tensorflow as tf

    from components.backbones import text_preprocessing

    found = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        texts = [
            tf.train.Example.FromString(r.numpy()).features.feature["text"].bytes_list.value[0].decode("utf-8")
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
        found.update((t, split) for t in text_preprocessing.model_texts(texts, lowercase=True, max_chars=20_000))
    return found
