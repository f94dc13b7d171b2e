"""The real pipeline with a TF Hub feature vector exported by the test ('unit' preprocessing).

The other preprocessing families run through the pipeline in runs that other tests need
anyway (one run each keeps the suite fast): caffe (resnet50) in the messy-folder test, none
(efficientnet_b0, which rescales inside) in the spans test, tf (mobilenet_v2) in the main one.
Each run's Transform graph must equal Keras' own preprocess_input, and serving must use it."""

import glob
import os

import pytest

from tests.conftest import (
    assert_signatures_agree,
    assert_transform_matches_keras,
    export_tiny_hub_feature_vector,
    run_graft,
    small_training_config,
)


@pytest.mark.e2e
def test_pipeline_with_a_hub_feature_vector(tmp_path, tiny_digits_dir):
    weights = export_tiny_hub_feature_vector(str(tmp_path / "hub_fv"))
    config = small_training_config(
        tmp_path,
        data_dir=tiny_digits_dir,
        backbone="hub",
        weights=weights,
        backbone_kwargs={},
        stages="frozen",
        epochs=2,
        min_accuracy=0.0,
        train_batchnorm=False,
        batchnorm_momentum=None,
    )
    summary, output = run_graft(tmp_path, config)
    assert summary["blessed"] is True and summary["pushed_model_dir"], output
    assert "training hub" in output
    files = sorted(glob.glob(os.path.join(tiny_digits_dir, "*", "*.png")))[::25]
    assert_transform_matches_keras(tmp_path / "root", "hub", files, 32)
    assert_signatures_agree(summary["pushed_model_dir"], files, 3)
