import os
import re

import pytest

from pipeline.config import ConfigError, GraftConfig, load_config, trainer_settings
from tests.conftest import graft_cli


def test_defaults_follow_tfx_template_layout():
    config = GraftConfig(pipeline_name="p", data_dir=".")
    assert config.pipeline_root == os.path.join("tfx_pipeline_output", "p")
    assert config.metadata_path == os.path.join("tfx_metadata", "p", "metadata.db")
    assert config.serving_dir == os.path.join("tfx_pipeline_output", "p", "serving_model")


def test_flags_override_file(tmp_path, digits_dir):
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: {digits_dir}\nbackbone: resnet50\nepochs: 7\nweights: none\n")
    config = load_config(str(path), {"backbone": "efficientnet_b0", "epochs": None})
    assert config.backbone == "efficientnet_b0"  # flag wins
    assert config.epochs == 7  # None means the flag was not given
    assert config.input_size == 224


def test_unknown_option_suggests_the_closest(tmp_path, digits_dir):
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: {digits_dir}\nbackbnoe: resnet50\n")
    with pytest.raises(ConfigError, match=r"'backbnoe' \(did you mean 'backbone'\?\)"):
        load_config(str(path), {})


def test_malformed_config_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data_dir: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(str(path), {})


def test_config_is_data_not_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("data_dir: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path), {})


def test_all_problems_reported_at_once(digits_dir):
    with pytest.raises(ConfigError) as info:
        load_config(None, {"data_dir": "/no/such/dir", "backbone": "mobilenetv2", "min_accuracy": 2.0})
    message = str(info.value)
    assert "/no/such/dir: no such directory" in message
    assert "Did you mean: mobilenet_v2" in message
    assert "--min-accuracy must be between 0 and 1" in message


def test_class_gates_are_fractions_on_the_class_slices(digits_dir):
    with pytest.raises(ConfigError) as info:
        load_config(
            None,
            {
                "data_dir": digits_dir,
                "weights": "none",
                "min_class_recall": 60,
                "max_class_recall_drop": 0.1,
                "slice_by_class": False,
            },
        )
    message = str(info.value)
    assert "min_class_recall must be between 0 and 1" in message
    assert "max_class_recall_drop gates each class's slice: it needs slice_by_class: true" in message
    with pytest.raises(ConfigError, match="tfrecord-dir examples have no class-name feature"):
        load_config(None, {"tfrecord_dir": digits_dir, "weights": "none", "min_class_recall": 0.5})
    # The command line's flags reach the config.
    from pipeline import cli

    args = cli._run_parser().parse_args(
        ["--data-dir", digits_dir, "--weights", "none", "--min-class-recall", "0.4", "--max-class-recall-drop", "0.1"]
    )
    config = cli.config_from_args(args)
    assert (config.min_class_recall, config.max_class_recall_drop) == (0.4, 0.1)


def test_image_size_too_small_for_backbone(digits_dir):
    with pytest.raises(ConfigError, match="at least 32 px"):
        load_config(None, {"data_dir": digits_dir, "image_size": 16, "weights": "none"})


def test_bad_stage_is_a_config_error(digits_dir):
    with pytest.raises(ConfigError, match=r"stages\[1\].epochs must be a positive integer"):
        load_config(
            None,
            {"data_dir": digits_dir, "weights": "none", "stages": [{"epochs": 1}, {"epochs": 0, "trainable": "all"}]},
        )


def test_trainer_settings_carry_resolved_stages(digits_dir):
    config = load_config(
        None,
        {
            "data_dir": digits_dir,
            "weights": "none",
            "stages": "two_stage",
            "epochs": 2,
            "fine_tune_epochs": 1,
            "allow_frozen_random_backbone": True,
        },
    )
    stages = trainer_settings(config).to_dict()["stages"]  # as the Trainer's custom_config carries them
    assert [(s["trainable"], s["epochs"]) for s in stages] == [("none", 2), ("all", 1)]
    # Rates from the range test (None), fine-tuning at a tenth of it; budgets at least min_*_steps.
    assert [(s["learning_rate"], s["rate_scale"]) for s in stages] == [(None, 1.0), (None, 0.1)]
    assert [s["min_steps"] for s in stages] == [300, config.min_fine_tune_steps]  # min_head_steps unset: 300


def test_cli_config_errors_exit_2_fast_before_tfx(tmp_path):
    result, seconds = graft_cli("--data-dir", str(tmp_path / "missing"), "--weights", "none")
    assert result.returncode == 2
    assert "no such directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 5, seconds


def test_cli_single_class_is_a_clear_error(tmp_path):
    (tmp_path / "only").mkdir()
    from tests.conftest import encode, random_image

    (tmp_path / "only" / "a.png").write_bytes(encode(random_image(8, 8), "PNG"))
    result, _ = graft_cli("--data-dir", str(tmp_path), "--weights", "none")
    assert result.returncode == 2
    assert "at least 2 class folders" in result.stderr


def test_offline_imagenet_weights_fail_fast_with_instructions(digits_dir):
    # A dead proxy makes the download fail the same way with or without a network here.
    dead_proxy = {
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "KERAS_HOME": str(digits_dir) + "-keras-home",
    }
    result, seconds = graft_cli(
        "--data-dir", digits_dir, "--weights", "imagenet", "--backbone", "mobilenet_v2", env=dead_proxy
    )
    assert result.returncode == 2
    assert "--weights /path/to/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in result.stderr
    assert "-keras-home/models/mobilenet_v2_weights" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 30, seconds


def test_help_explains_itself():
    result, _ = graft_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--data-dir",
        "--tfrecord-dir",
        "--backbone",
        "--weights",
        "--pipeline-root",
        "--metadata-path",
        "--serving-dir",
        "--config",
        "--summary-json",
        "--verbose",
    ):
        assert flag in result.stdout


def test_weights_file_for_another_architecture_exit_2_fast(tmp_path, digits_dir):
    from components.backbones import registry as backbones

    path = str(tmp_path / "efficientnet.h5")
    backbones.build(backbones.get("efficientnet_b0"), 32, "none").save_weights(path)
    result, seconds = graft_cli(
        "--data-dir",
        digits_dir,
        "--weights",
        path,
        "--backbone",
        "mobilenet_v2",
        "--pipeline-root",
        str(tmp_path / "root"),
    )
    assert result.returncode == 2
    assert (
        "weights file for another architecture: it holds 131 layers with weights, mobilenet_v2 has 104" in result.stderr
    )
    assert seconds < 5, seconds


def test_per_class_metrics_are_those_of_the_argmax_confusion_matrix():
    from components.evaluator.results import argmax_class_metrics

    # actual 0: 28 right, 4 taken for 1; actual 1: 10 right, 6 taken for 0; actual 2: all 5 right.
    entries = [[0, 0, 28.0], [0, 1, 4.0], [1, 1, 10.0], [1, 0, 6.0], [2, 2, 5.0]]
    metrics = argmax_class_metrics(entries, 3)
    assert metrics["recall/class_0"] == pytest.approx(28 / 32)
    assert metrics["precision/class_0"] == pytest.approx(28 / 34)
    assert metrics["recall/class_1"] == pytest.approx(10 / 16)
    assert metrics["precision/class_1"] == pytest.approx(10 / 14)
    assert metrics["precision/class_2"] == metrics["recall/class_2"] == metrics["f1_score/class_2"] == 1.0
    f1_0 = 2 * (28 / 34) * (28 / 32) / (28 / 34 + 28 / 32)
    assert metrics["f1_score/class_0"] == pytest.approx(f1_0, abs=1e-6)
    assert metrics["macro_f1_score"] == pytest.approx((f1_0 + metrics["f1_score/class_1"] + 1.0) / 3, abs=1e-6)


def test_weights_none_without_stages_trains_from_scratch(digits_dir):
    config = load_config(None, {"data_dir": digits_dir, "weights": "none", "epochs": 4, "fine_tune_epochs": 2})
    [stage] = config.stage_plan
    assert (stage.name, stage.trainable, stage.epochs) == ("scratch", "all", 6)
    settings = trainer_settings(config)
    assert settings.train_batchnorm is True and settings.batchnorm_momentum == 0.9
    pretrained = load_config(None, {"data_dir": digits_dir, "weights": "none", "stages": "full"})
    assert pretrained.stage_plan[0].trainable == "all"


def test_frozen_stages_on_a_random_backbone_are_refused_unless_insisted(digits_dir):
    with pytest.raises(ConfigError, match="'head' keep the backbone frozen, but with --weights none it is random"):
        load_config(None, {"data_dir": digits_dir, "weights": "none", "stages": "two_stage"})
    config = load_config(
        None, {"data_dir": digits_dir, "weights": "none", "stages": "frozen", "allow_frozen_random_backbone": True}
    )
    assert config.stage_plan[0].trainable == "none"
    assert trainer_settings(config).train_batchnorm is True  # from scratch: BatchNorm trains unless told not to


def test_local_beam_components_start_without_packaging_tfx(digits_dir):
    """TFX builds an sdist of itself before every Beam component unless the Beam args name the
    workers' environment (~3 s, four times a run); the DirectRunner's workers are this Python."""
    from tfx.utils import dependency_utils

    from pipeline.config import beam_args

    args = beam_args(GraftConfig(data_dir=digits_dir))
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_local_beam_flags_given_keep_the_rules_of_the_default_ones(digits_dir, monkeypatch):
    """Flags given in the config (beam_pipeline_args) got neither the workers' environment (TFX then
    packaged itself before each Beam component) nor, with s3:// paths, Beam's S3 endpoint (each Beam
    stage would have looked for AWS S3): the rule of the compiled spec, now the local runner's too.
    A runner of its own (Dataflow) is left to TFX, which ships its package to that runner's workers."""
    from tfx.utils import dependency_utils

    from pipeline.config import LOCAL_BEAM_ENVIRONMENT, beam_args

    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")
    given = ["--direct_running_mode=in_memory"]
    config = GraftConfig(data_dir=digits_dir, pipeline_root="s3://bucket/root", beam_pipeline_args=given)
    args = beam_args(config)
    assert args[:2] == [*given, f"--sdk_container_image={LOCAL_BEAM_ENVIRONMENT}"]
    assert {"--beam_plugins=components.beam_s3", "--s3_endpoint_url=http://127.0.0.1:9"} <= set(args)
    assert dependency_utils.make_beam_dependency_flags(args) == args
    dataflow = ["--runner=DataflowRunner", "--project=p"]
    assert beam_args(GraftConfig(data_dir=digits_dir, beam_pipeline_args=dataflow)) == dataflow


def test_a_golden_set_must_stand_apart_from_the_training_data(tmp_path, digits_dir):
    inside = os.path.join(digits_dir, "digit_0")
    with pytest.raises(ConfigError, match=f"--eval-data {inside} overlaps the training data {digits_dir}"):
        load_config(None, {"data_dir": digits_dir, "eval_data": inside})
    with pytest.raises(ConfigError, match="--eval-data goes with --data-dir or --text-data"):
        load_config(None, {"tfrecord_dir": str(tmp_path), "eval_data": digits_dir})
    with pytest.raises(ConfigError, match="--eval-data /no/golden: no such directory"):
        load_config(None, {"data_dir": digits_dir, "eval_data": "/no/golden"})
    apart = tmp_path / "golden"
    apart.mkdir()
    assert load_config(None, {"data_dir": digits_dir, "eval_data": str(apart)}).eval_data == str(apart)


def test_cli_refuses_a_golden_class_the_model_lacks_before_anything_runs(tmp_path, digits_dir):
    (tmp_path / "golden" / "digit_0").mkdir(parents=True)
    (tmp_path / "golden" / "digit_9").mkdir()
    result, _ = graft_cli("--data-dir", digits_dir, "--eval-data", str(tmp_path / "golden"), "--weights", "none")
    assert result.returncode == 2, result.stderr
    assert f"--eval-data {tmp_path / 'golden'}: class folder(s) digit_9 not among the classes" in result.stderr


@pytest.mark.parametrize(
    "window, spans, message",
    [
        (0, True, "span_window must be >= 1 (got 0)"),
        (3, False, "span_window > 1 needs spans: true and data_dir or text_data"),
    ],
)
def test_a_span_window_needs_spans_and_a_positive_size(digits_dir, window, spans, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, {"data_dir": str(digits_dir), "span_window": window, "spans": spans})


def test_a_runs_local_files_stay_on_this_machine_when_the_pipeline_root_is_remote(tmp_path):
    """The log, the report and run-local's work are local files: under a local pipeline root, or
    beside the metadata database when the root is an object store (they went to a folder 's3:')."""
    local = GraftConfig(data_dir="d", pipeline_root=str(tmp_path / "root"), metadata_path=str(tmp_path / "m" / "db"))
    assert local.local_output_dir == str(tmp_path / "root")
    remote = GraftConfig(data_dir="d", pipeline_root="gs://bucket/root", metadata_path=str(tmp_path / "m" / "db"))
    assert remote.local_output_dir == str(tmp_path / "m")
