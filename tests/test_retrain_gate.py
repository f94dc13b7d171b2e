"""Nothing new, nothing trained: the RetrainGate's decision from training keys, and the trigger
condition the Kubeflow compiler writes for the nodes after it, as run-local evaluates it.
(The runs themselves: tests/test_pipeline_e2e.py and tests/test_kubeflow.py.)"""

import pytest

from components.retrain_gate.decision import FORCED, decide, training_key
from kubeflow import run_local

CONFIG = {"backbone": "mobilenet_v2", "epochs": 5, "learning_rate": None}


def _key(span=0, fingerprint="split:all,num_files:10,total_bytes:99", config=None, code="abc", listing="d1"):
    return training_key(span, fingerprint, config or CONFIG, code, listing)


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
        # A relabelling move between class folders keeps TFX's fingerprint (count, bytes, mtimes).
        ({"listing": "d2"}, "new data: files moved between classes, added or removed since serving version 3"),
        # No fingerprint recorded (open-source KFP runs no ExampleGen driver): never "nothing new".
        ({"fingerprint": None}, "the input's fingerprint is unknown"),
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


def test_a_candidate_refused_against_what_still_serves_is_not_trained_again(tmp_path):
    """The Pusher remembers a refused candidate's key in the serving directory; the same data,
    config and code are not trained again while the model it was judged against serves and the
    same golden set and Evaluator code judge it (the evaluation key)."""
    from components.retrain_gate import refusals
    from components.retrain_gate.component import serving_state

    serving = str(tmp_path / "serving")
    (tmp_path / "serving" / "3").mkdir(parents=True)
    before = serving_state(serving)
    new_span = _key(span=1)
    refusals.record(serving, new_span, "3", "accuracy change ... not better beyond noise", "run-7", "e1")
    assert serving_state(serving) != before  # the gate's local cache key: a cached 'train' is not replayed
    refused = refusals.find(serving, new_span)

    def decision(key=new_span, version="3", force=False, evaluation_key="e1"):
        return decide(key, version, _served(_key()), force, refused, evaluation_key)

    retrain, reason = decision()
    assert retrain is False and reason.startswith(
        "nothing new: the same data, config and code were trained in run run-7 ("
    ), reason
    assert "refused against serving version 3, which still serves: accuracy change ... not better" in reason
    # Another serving model since (a push, a rollback): the candidate meets it, so it trains.
    assert decision(version="4")[0] is True
    # Another golden set or Evaluator code (evaluation key), or one that cannot be known: trains.
    assert decision(evaluation_key="e2")[0] is True and decision(evaluation_key=None)[0] is True
    # Anything else new, or --force: trains.
    assert refusals.find(serving, _key(span=1, config={**CONFIG, "epochs": 8})) is None
    assert decision(force=True) == (True, FORCED)
    # Refused with nothing serving (min_accuracy): not trained again while nothing serves.
    refusals.record(serving, _key(span=2), "", "below min_accuracy", "run-8", "e1")
    retrain, reason = decide(_key(span=2), None, None, False, refusals.find(serving, _key(span=2)), "e1")
    assert retrain is False and "refused against nothing serving: below min_accuracy" in reason
    # Recorded on Kubeflow, where TFX gives executors no run id: the time alone says which run.
    refusals.record(serving, _key(span=4), "3", "below min_accuracy", None, "e1")
    reason = decide(_key(span=4), "3", _served(_key()), False, refusals.find(serving, _key(span=4)), "e1")[1]
    assert "trained in a run (" in reason and "None" not in reason, reason
    # The same key refused again against another version: the gate's cache key changes too.
    state = serving_state(serving)
    refusals.record(serving, _key(span=2), "3", "below min_accuracy", "run-9", "e1")
    assert serving_state(serving) != state


def test_the_evaluation_key_follows_the_golden_set(tmp_path, digits_dir):
    from pipeline.config import load_config, retrain_gate_settings

    golden = tmp_path / "golden" / "digit_0"
    golden.mkdir(parents=True)
    (golden / "a.png").write_bytes(b"x")
    config = load_config(None, {"data_dir": digits_dir, "eval_data": str(tmp_path / "golden")})
    first = retrain_gate_settings(config).evaluation_key
    (golden / "b.png").write_bytes(b"y")
    assert retrain_gate_settings(config).evaluation_key not in (first, None)
    config.eval_data = "gs://bucket/golden"  # its edits cannot be seen from here: no refusal is final
    assert retrain_gate_settings(config).evaluation_key is None


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
    assert tasks["RetrainGate"]["cachingOptions"] == {"enableCache": False}  # never replayed from KFP's cache
    # Every later task sits in one sub-DAG whose task carries the gate's condition: KFP's driver
    # resolves a task's inputs before its condition, so per-task conditions would fail on the
    # outputs of tasks skipped before them; a skipped sub-DAG's tasks are never driven.
    assert set(tasks) == {"ImageExampleGen", "RetrainGate", compiler.BRANCH}
    branch = tasks[compiler.BRANCH]
    inner = spec["components"][compiler.BRANCH]["dag"]["tasks"]
    assert set(inner) == {
        "StatisticsGen",
        "ImportSchemaGen",
        "ExampleValidator",
        "Transform",
        "Trainer",
        "ServingBaseline",
        "Evaluator",
        "Pusher",
    }
    assert not any("triggerPolicy" in task for task in inner.values())
    assert inner["Trainer"]["cachingOptions"] == {"enableCache": True}
    assert inner["Transform"]["inputs"]["artifacts"]["examples"] == {
        "componentInputArtifact": "ImageExampleGen-examples"
    }
    assert branch["inputs"]["artifacts"]["RetrainGate-decision"] == {
        "taskOutputArtifact": {"producerTask": "RetrainGate", "outputArtifactKey": "decision"}
    }
    condition = branch["triggerPolicy"]["condition"]
    assert "inputs.artifacts['RetrainGate-decision']" in condition
    # As KFP hands the gate's int property over: a number in the artifact's metadata.
    assert run_local.condition_holds(condition, {"RetrainGate-decision": {"metadata": {"retrain": 1}}}) is True
    assert run_local.condition_holds(condition, {"RetrainGate-decision": {"metadata": {"retrain": 0.0}}}) is False
    assert run_local.condition_holds(condition, {"RetrainGate-decision": {"metadata": {}}}) is False
    # The spec still parses strictly into KFP's protos.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())


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


def test_the_data_record_reads_properties_as_the_kubeflow_entrypoint_hands_them_over():
    """Through TFX's Kubeflow entrypoint every property that travelled as metadata arrives as a
    struct value, span 0 as 0.0 (which TFX's get_custom_property reads as None): the provenance
    and the gate's key read them all, or the gate would call unknown data 'nothing new'."""
    from tfx.types import artifact, standard_artifacts

    from components.serving import provenance

    examples = standard_artifacts.Examples()
    for name, value in {
        "span": 0.0,
        "input_fingerprint": "split:all,num_files:3",
        "data_listing": "d1",
        "ingest_total": 3.0,
    }.items():
        examples.mlmd_artifact.custom_properties[name].struct_value.CopyFrom(artifact._encode_struct_value(value))
    record = provenance.data_record(examples)
    assert (record["span"], record["input_fingerprint"], record["data_listing"]) == (0, "split:all,num_files:3", "d1")
    assert record["ingest"]["total"] == 3 and record["ingest"]["accepted"] is None


def test_with_init_from_serving_what_serves_is_in_the_trainers_cache_key(tmp_path):
    """TFX keys a cached execution on its visible inputs and exec properties, not on the Cond's
    predicate: a Trainer that continued another served model must not be handed back from the
    cache (before: the same custom_config whatever served). Without init_from it stays cached."""
    import json

    from pipeline import cli
    from pipeline.pipeline import create_pipeline

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    argv = ["--data-dir", str(tmp_path / "data"), "--pipeline-root", str(tmp_path / "root"), "--tuner-trials", "2"]
    for flags, differs in (([*argv, "--init-from", "serving"], True), (argv, False)):
        config = cli.config_from_args(cli._run_parser().parse_args(flags))
        config.class_names = ["a", "b"]
        properties = [
            {
                c.id: c.exec_properties.get("custom_config")
                for c in create_pipeline(config, serving_state=state).components
            }
            for state in ("/serving/1:aaaa", "/serving/2:bbbb")
        ]
        for node in ("Trainer", "Tuner"):
            assert (properties[0][node] != properties[1][node]) is differs, node
        assert json.loads(properties[1]["Trainer"])["warm_start_key"] == ("/serving/2:bbbb" if differs else "")
