"""Nothing new, nothing trained: the RetrainGate's decision from training keys, and the trigger
condition the Kubeflow compiler writes for the nodes after it, as run-local evaluates it.
(The runs themselves: tests/test_pipeline_e2e.py and tests/test_kubeflow.py.)"""

import pytest

from components.retrain_gate.decision import FORCED, decide, training_key
from kubeflow import run_local

CONFIG = {"backbone": "mobilenet_v2", "epochs": 5, "learning_rate": None}


def _key(span=0, fingerprint="split:all,num_files:10,total_bytes:99", config=None, code="abc"):
    return training_key(span, fingerprint, config or CONFIG, code)


def _served(key):
    return {"reason": "blessed by the Evaluator", "training_key": key}


def test_the_same_data_config_and_code_as_the_serving_version_is_not_trained_again():
    retrain, reason = decide(_key(), "3", _served(_key()), force=False)
    assert retrain is False
    assert reason.startswith(
        "nothing new: serving version 3 was trained on the same data (span 0, same input fingerprint)"
    )
    assert "--force" in reason


@pytest.mark.parametrize(
    "changed, why",
    [
        ({"span": 4}, "new data: span 4 (serving version 3 was trained on span 0)"),
        ({"fingerprint": "split:all,num_files:11,total_bytes:120"}, "new data: the input's fingerprint differs"),
        ({"config": {**CONFIG, "epochs": 8}}, "config changed since serving version 3: epochs: 5 -> 8"),
        ({"config": {**CONFIG, "seed": 1}}, "config changed since serving version 3: seed: None -> 1"),
        ({"code": "def"}, "the model's code changed since serving version 3"),
    ],
)
def test_anything_new_trains_and_says_what(changed, why):
    retrain, reason = decide(_key(**changed), "3", _served(_key()), force=False)
    assert retrain is True and reason.startswith(why), reason


def test_nothing_serving_a_version_without_a_key_and_force_all_train():
    assert decide(_key(), None, None, force=False) == (True, "nothing serves yet")
    retrain, reason = decide(_key(), "2", {"reason": "blessed by the Evaluator"}, force=False)
    assert retrain is True and "records no training key" in reason
    assert decide(_key(), "3", _served(_key()), force=True) == (True, FORCED)


def test_the_key_survives_a_json_round_trip_unchanged():
    """provenance.json stores the key as JSON: a tuple or an int key in the config must compare equal after it."""
    import json

    key = _key(config={"stages": ("head", "full"), "backbone_kwargs": {"alpha": 0.35}})
    assert decide(key, "1", _served(json.loads(json.dumps(key))), force=False)[0] is False


def test_compiled_tasks_after_the_gate_run_only_when_it_says_train(tmp_path):
    from kubeflow import compiler
    from kubeflow.settings import KubeflowSettings
    from pipeline.config import GraftConfig

    config = GraftConfig(
        pipeline_name="gate",
        data_dir="gs://bucket/images",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        class_names=["a", "b"],
    )
    spec, _ = compiler.load_compiled(
        compiler.compile_pipeline(config, KubeflowSettings.from_dict({}), str(tmp_path / "p.yaml"))
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["RetrainGate"]["dependentTasks"] == ["ImageExampleGen"]
    assert "cachingOptions" not in tasks["RetrainGate"]  # its decision is never replayed from KFP's cache
    assert tasks["Trainer"]["cachingOptions"] == {"enableCache": True}
    gated = {name for name, task in tasks.items() if task.get("triggerPolicy", {}).get("condition")}
    assert gated == set(tasks) - {"ImageExampleGen", "RetrainGate"}
    for name in gated:
        condition = tasks[name]["triggerPolicy"]["condition"]
        [key] = [k for k in tasks[name]["inputs"]["artifacts"] if f"['{k}']" in condition]
        assert tasks[name]["inputs"]["artifacts"][key]["taskOutputArtifact"]["producerTask"] == "RetrainGate"
        # As KFP hands the gate's int property over: a number in the artifact's metadata.
        assert run_local.condition_holds(condition, {key: {"metadata": {"retrain": 1}}}) is True, condition
        assert run_local.condition_holds(condition, {key: {"metadata": {"retrain": 0.0}}}) is False
        assert run_local.condition_holds(condition, {key: {"metadata": {}}}) is False


def test_run_local_refuses_a_condition_it_cannot_evaluate():
    with pytest.raises(ValueError, match="not one: \"inputs.parameters\\['x'\\] > 2\""):
        run_local.condition_holds("inputs.parameters['x'] > 2", {})


def test_force_reaches_the_gate_and_turns_the_cache_off(tmp_path):
    """--force: the gate trains whatever serves, and no cached Trainer stands in for training."""
    import json

    from pipeline import cli
    from pipeline.pipeline import create_pipeline

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    argv = ["--data-dir", str(tmp_path / "data"), "--pipeline-root", str(tmp_path / "root")]
    for flags, force in ((argv, False), ([*argv, "--force"], True)):
        config = cli.config_from_args(cli._run_parser().parse_args(flags))
        config.class_names = ["a", "b"]
        dag = create_pipeline(config)
        [gate] = [c for c in dag.components if c.id == "RetrainGate"]
        assert json.loads(gate.exec_properties["custom_config"])["force"] is force
        assert dag.enable_cache is not force
