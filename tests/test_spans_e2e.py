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
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    [examples] = metadata_store.MetadataStore(connection).get_artifacts_by_type("Examples")
    return examples.custom_properties["span"].int_value


@pytest.mark.e2e
def test_text_run_takes_the_newest_span(tmp_path):
    """Texts as spans: a folder of span-<N>/ folders (here a table in each); the run reads the
    newest, and the examples artifact records its span."""
    from tests.test_text_e2e import config as text_config
    from tests.test_text_e2e import sample_rows, write_table

    rows = sample_rows(900)
    data = tmp_path / "texts"
    for span, part in ((1, rows[:300]), (2, rows[300:])):
        (data / f"span-{span}").mkdir(parents=True)
        write_table(str(data / f"span-{span}" / "reviews.csv"), part)
    config = text_config(tmp_path, "spans", str(data), spans=True, min_accuracy=0.0)
    summary, _ = run_graft(tmp_path, config, "spans")
    ingest = summary["ingest"]
    assert ingest["accepted"] + ingest["skipped"] == 600 and len(ingest["quarantined"]) == 4  # span-2 alone
    assert summary["pushed_model_dir"]
    assert _examples_span(config["metadata_path"]) == 2
