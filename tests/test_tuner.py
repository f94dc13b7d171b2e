"""TFX's Tuner over Graft's stages: the search space each plan gets, how a trial's values become
the Trainer's settings, and (e2e) a Tuner in the DAG whose best values the Trainer trains with."""

import glob
import json
import os

import pytest
import tensorflow as tf

from components.tuner import search_space
from kubeflow import compiler
from kubeflow.settings import KubeflowSettings
from pipeline.config import ConfigError, GraftConfig, load_config
from tests.conftest import (
    assert_signatures_agree,
    assert_transform_matches_keras,
    run_graft,
    small_training_config,
    tiny_trainer_settings,
    transform_graph_dir,
)
from tests.test_tfrecord_e2e import write_tfrecords


def test_the_space_follows_the_training_plan():
    two_stage = search_space.define(tiny_trainer_settings(stages="two_stage"))
    assert set(two_stage.values) == {"head_learning_rate", "budget", "fine_tune_rate_scale", "fine_tune_layers"}
    progressive = search_space.define(tiny_trainer_settings(stages="progressive"))
    assert "fine_tune_layers" not in progressive.values  # two fine stages: their depths stay as planned
    frozen = search_space.define(tiny_trainer_settings(stages="frozen"))
    assert set(frozen.values) == {"head_learning_rate", "budget"}
    tfidf = search_space.define(tiny_trainer_settings(backbone="text_tfidf", data_dir=None, text_data="x.csv"))
    assert set(tfidf.values) == {"head_learning_rate", "budget", "head_l2_scale"}


def test_a_trials_values_become_explicit_rates_budgets_and_depth():
    settings = tiny_trainer_settings(stages="progressive", epochs=4, fine_tune_epochs=3)
    tuned = search_space.apply(
        settings, {"head_learning_rate": 0.01, "budget": 2.0, "fine_tune_rate_scale": 0.3, "fine_tune_layers": "all"}
    )
    head, quarter, half = tuned.stages
    assert (head.learning_rate, head.epochs, head.min_steps) == (0.01, 8, 600)
    # The fine stages keep their planned ratio (the second at a third of the first); no range test.
    assert quarter.learning_rate == pytest.approx(0.003) and half.learning_rate == pytest.approx(0.001)
    assert (quarter.trainable, half.trainable) == ("top:0.25", "top:0.5")  # depth applies to one fine stage only
    assert (quarter.epochs, quarter.min_steps) == (6, 200)
    two = search_space.apply(
        tiny_trainer_settings(stages="two_stage"),
        {"head_learning_rate": 0.002, "budget": 0.5, "fine_tune_rate_scale": 0.1, "fine_tune_layers": "top:0.25"},
    )
    assert two.stages[1].trainable == "top:0.25" and two.stages[1].learning_rate == pytest.approx(2e-4)
    assert all(s.rate_scale == 1.0 for s in two.stages)
    # A later frozen stage with its own rate keeps its ratio to the first stage's.
    listed = tiny_trainer_settings(
        stages=[
            {"epochs": 1, "trainable": "none", "learning_rate": 0.01},
            {"epochs": 1, "trainable": "none", "learning_rate": 0.001},
        ]
    )
    assert search_space.apply(listed, {"head_learning_rate": 0.02}).stages[1].learning_rate == pytest.approx(0.002)


def test_tuner_section_is_checked_and_the_flag_sets_it(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = load_config(None, {"data_dir": str(tmp_path), "tuner_trials": 3})
    assert (config.tuner_section.trials, config.tuner_section.validation_percent) == (3, 20)
    with pytest.raises(ConfigError, match="tuner.validation_percent must be an integer from 5 to 50"):
        load_config(None, {"data_dir": str(tmp_path), "tuner": {"trials": 2, "validation_percent": 70}})
    with pytest.raises(ConfigError, match="did you mean 'trials'"):
        load_config(None, {"data_dir": str(tmp_path), "tuner": {"trails": 2}})


def test_the_tuner_compiles_for_kubeflow_with_the_trainers_resources(tmp_path):
    config = GraftConfig(
        data_dir="gs://bucket/images",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        class_names=["cat", "dog"],
        tuner={"trials": 4},
    )
    settings = KubeflowSettings.from_dict({"trainer_node_selector": {"pool": "gpu"}})
    spec, platform = compiler.load_compiled(compiler.compile_pipeline(config, settings, str(tmp_path / "p.yaml")))
    tasks = compiler.all_tasks(spec)
    assert "Tuner" in tasks and "Tuner" in tasks["Trainer"]["dependentTasks"]
    executors = spec["deploymentSpec"]["executors"]
    assert (
        executors["Tuner_executor"]["container"]["resources"] == executors["Trainer_executor"]["container"]["resources"]
    )
    assert executors["Tuner_executor"]["container"]["resources"]["accelerator"]["count"] == "1"
    for label in ("Tuner_executor", "Trainer_executor"):  # both check, at their start, for the GPU they asked for
        assert {"name": "GRAFT_TRAINER_GPUS", "value": "1"} in executors[label]["container"]["env"]
    assert set(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) == {
        "Trainer_executor",
        "Tuner_executor",
    }
    assert "components.tuner.tuner_fn.tuner_fn" in open(tmp_path / "p.yaml").read()


@pytest.mark.e2e
def test_the_tuner_runs_in_the_dag_and_the_trainer_trains_with_its_best_on_tfrecords(tmp_path, tiny_digits_dir):
    """A run with a Tuner tunes, trains with the best values and pushes; its data is TFRecords
    (--tfrecord-dir, TFX's ImportExampleGen), so that the same run takes that input path through
    training, evaluation and the push (one pipeline run for both: each costs the suite a minute)."""
    count = write_tfrecords(str(tmp_path / "records" / "data.tfrecord"), tiny_digits_dir)
    files = sorted(glob.glob(os.path.join(tiny_digits_dir, "*", "*.png")))
    names = ["zero", "one", "seven"]  # TFRecords carry label ids; the names are the config's
    config = small_training_config(
        tmp_path,
        tfrecord_dir=str(tmp_path / "records"),
        class_names=names,
        train_batchnorm=False,
        batchnorm_momentum=None,
        stages="two_stage",
        epochs=1,
        fine_tune_epochs=1,
        min_head_steps=0,
        min_fine_tune_steps=0,
        validation_percent=None,
        min_accuracy=0.0,
        tuner={"trials": 2},  # two: enough to have a best, each trial costs seconds
        allow_cpu_fallback=True,
    )
    # Told it has a GPU that this machine lacks: with allow_cpu_fallback both steps warn and train.
    summary, output = run_graft(tmp_path, config, env={"GRAFT_TRAINER_GPUS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert summary["blessed"] is True and 0 < summary["metrics"]["example_count"] < count
    assert "training mobilenet_v2" in output
    assert_transform_matches_keras(transform_graph_dir(tmp_path / "root"), "mobilenet_v2", files[::10], 32)
    assert_signatures_agree(summary["pushed_model_dir"], files[::10], 3)
    loaded = tf.saved_model.load(summary["pushed_model_dir"])
    out = loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([open(files[-1], "rb").read()]))
    assert out["class_name"].numpy()[0].decode() == names[int(out["class_id"].numpy()[0])]
    root = tmp_path / "root"
    [best_file] = glob.glob(str(root / "Tuner" / "best_hyperparameters" / "*" / "best_hyperparameters.txt"))
    best = json.load(open(best_file))["values"]
    [results_file] = glob.glob(str(root / "Tuner" / "tuner_results" / "*" / "tuner_results.json"))
    results = json.load(open(results_file))
    assert len(results) == 2 and all(0 <= r["score"] <= 1 for r in results)
    assert max(r["score"] for r in results) == results[0]["score"]
    assert {k: results[0][k] for k in best} == best  # the best trial's values are what TFX passes on
    assert set(best) == {"head_learning_rate", "budget", "fine_tune_rate_scale", "fine_tune_layers"}
    # The Trainer trained with them: explicit rates (no range test), budgets, depth.
    choices = summary["training_choices"]
    assert choices["tuner"] == best and "rate_search" not in choices
    head, fine = choices["stages"]
    assert head["learning_rate"] == pytest.approx(best["head_learning_rate"])
    assert fine["learning_rate"] == pytest.approx(best["head_learning_rate"] * best["fine_tune_rate_scale"])
    assert (head["trainable"], fine["trainable"]) == ("none", best["fine_tune_layers"])
    assert head["epochs"] == fine["epochs"] == max(1, round(best["budget"]))
    # Small data: the Trainer carves nothing; each trial scored on the Tuner's 20 %.
    assert choices["validation_examples"] == 0
    assert "Tuner's best: " in output and summary["pushed_model_dir"]
    assert choices["devices"] == {
        "gpu_count": 0,
        "gpus": [],
        "precision": "float32",
        "expected_gpus": 1,
        "cpu_fallback": True,
    }
    assert "devices: CPU, float32 (CPU FALLBACK: the step was given 1 GPU(s)" in output
    log = open(summary["log_file"]).read()
    assert log.count("was given 1 GPU(s) but TensorFlow sees 0: ") == 2  # the Tuner's and the Trainer's warnings
    assert os.path.exists(os.path.join(summary["pushed_model_dir"], "saved_model.pb"))


@pytest.mark.slow
def test_with_init_from_serving_each_trial_starts_from_the_served_weights(tmp_path, caplog):
    """The Trainer continues the served model; a trial that started from the backbone would tune
    the values for another starting point (before: every trial did)."""
    import logging

    import numpy as np
    import tensorflow as tf

    from components.trainer.model import build_model
    from components.trainer.run_fn import Prepared
    from components.trainer.training import TrainingOptions
    from components.tuner.tuner_fn import StageTuner

    settings = tiny_trainer_settings(stages=[{"name": "head", "epochs": 1, "trainable": "none"}])
    version = tmp_path / "serving" / "1"
    build_model(settings, 3).save_weights(str(version / "variables" / "variables"))
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 16))
    ).batch(8)
    prepared = Prepared(["a", "b", "c"], None, data, data, TrainingOptions(settings, 2), start_from=str(version))
    tuner = StageTuner(prepared, 2, directory=str(tmp_path / "tuner"), project_name="t", overwrite=True)
    with caplog.at_level(logging.INFO, logger="graft.trainer"):
        tuner.search()
    assert caplog.text.count("starting from the weights of serving version 1") == 2, caplog.text
