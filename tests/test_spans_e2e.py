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

    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config["metadata_path"]
    [examples] = metadata_store.MetadataStore(connection).get_artifacts_by_type("Examples")
    assert examples.custom_properties["span"].int_value == 2  # resolved by TFX's driver
