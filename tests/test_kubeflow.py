"""Kubeflow Pipelines v2: the compiled YAML parsed strictly into the KFP protos, the real
kfp.Client against a recording fake of the server's REST API, cron, and the TFX patches."""

import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format

from components.contract import PROVENANCE_FILE, ConfigError
from kubeflow import client, compiler, cron
from kubeflow.settings import KubeflowSettings
from pipeline.config import GraftConfig
from tests.conftest import REPO, S3_BUCKET
from tests.fake_kfp_server import FakeKfpServer
from tests.s3_server import upload_images

SECRET = "graft-kfp-secret-31415"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}


def _config():
    return GraftConfig(
        pipeline_name="graft-kfp",
        data_dir="gs://bucket/images",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        class_names=["cat", "dog", "fox"],
        weights="imagenet",
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    os.environ["GRAFT_TEST_CREDENTIAL"] = SECRET
    out = tmp_path_factory.mktemp("kfp")
    settings = KubeflowSettings.from_dict(
        {
            "image": "registry.example/graft:1",
            "trainer_node_selector": NODE_SELECTOR,
            "trainer_tolerations": [TOLERATION],
            "beam_pipeline_args": ["--runner=DataflowRunner", "--project=p", "--region=europe-west4"],
        }
    )
    path = compiler.compile_pipeline(_config(), settings, str(out / "graft.yaml"))
    vertex = compiler.compile_pipeline(
        _config(), KubeflowSettings.from_dict({"target": "vertex"}), str(out / "vertex.yaml")
    )
    return path, vertex


def test_spec_parses_strictly_into_kfp_protos(compiled):
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec, platform = compiler.load_compiled(compiled[0])
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields fail
    assert parsed.schema_version == "2.1.0"
    json_format.ParseDict(spec["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    trainer = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["Trainer_executor"]
    executor = json_format.ParseDict(trainer, kubernetes_executor_config_pb2.KubernetesExecutorConfig())
    assert dict(executor.node_selector.labels) == NODE_SELECTOR
    assert [(t.key, t.operator, t.effect) for t in executor.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert list(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) == ["Trainer_executor"]


def test_tasks_are_the_local_dag_and_only_the_trainer_gets_a_gpu(compiled):
    from pipeline.pipeline import create_pipeline

    spec, _ = compiler.load_compiled(compiled[0])
    local_ids = {c.id for c in create_pipeline(_config()).components}
    # The tasks after the RetrainGate sit in one sub-DAG that carries its condition.
    assert set(spec["root"]["dag"]["tasks"]) == {"ImageExampleGen", "RetrainGate", compiler.BRANCH}
    assert set(compiler.all_tasks(spec)) - {compiler.BRANCH} == local_ids
    assert not any("Resolver" in task for task in local_ids)
    assert "ServingBaseline" in local_ids
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        resources = container["resources"]
        assert container["image"] == "registry.example/graft:1"
        assert container["command"] == compiler.EXECUTOR_COMMAND
        if label == "Trainer_executor":
            assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
            assert (resources["cpuLimit"], resources["memoryLimit"]) == (8.0, 32.0)
        else:
            assert "accelerator" not in resources
            assert (resources["cpuLimit"], resources["memoryLimit"]) == (2.0, 8.0)


def test_beam_args_pass_through_and_nothing_is_packaged_or_leaked(compiled):
    spec, _ = compiler.load_compiled(compiled[0])
    transform_args = spec["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]
    assert transform_args[-4:] == [
        "--runner=DataflowRunner",
        "--project=p",
        "--region=europe-west4",
        "--sdk_container_image=registry.example/graft:1",  # Dataflow's workers run the image
    ]
    text = open(compiled[0]).read()
    assert ".whl" not in text and "module_file" not in text.replace('"module_file": ""', "")
    assert "components.trainer.run_fn.run_fn" in text  # referenced by import path
    assert "/graft/schemas/image_classification/schema.pbtxt" in text  # the image's path
    assert SECRET not in text


def test_vertex_target_names_vertex_accelerators(compiled):
    spec, platform = compiler.load_compiled(compiled[1])
    resources = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"]["type"] == "NVIDIA_TESLA_T4"
    assert platform is None
    assert spec["schemaVersion"] == "2.1.0"


def test_unknown_kubeflow_option_is_a_config_error():
    from components.contract import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'trainer_tolerations'"):
        KubeflowSettings.from_dict({"trainer_toleration": []})
    with pytest.raises(ConfigError, match="must be a Kubernetes toleration"):
        KubeflowSettings.from_dict({"trainer_tolerations": [{"kye": "x"}]})


@pytest.fixture()
def fake_server(monkeypatch):
    import kfp_server_api.rest as rest

    server = FakeKfpServer()
    monkeypatch.setattr(rest.urllib3, "PoolManager", server.pool_manager)
    return server


def test_submit_uploads_then_versions_and_starts_a_run(compiled, fake_server):
    plan = client.make_plan(
        "submit",
        compiled[0],
        "graft-kfp",
        "http://kfp.test:8080",
        "team-ns",
        "nightly",
        "gs://bucket/root",
        enable_caching=True,
    )
    first = client.execute(plan)
    second = client.execute(plan)
    assert first["pipeline_id"] == second["pipeline_id"] == "pipeline-1"
    assert first["run_id"] == "run-1"
    calls = [(r["method"], r["path"].rsplit("/apis/v2beta1/", 1)[1]) for r in fake_server.requests]
    assert calls.count(("POST", "pipelines/upload")) == 1  # the second submit adds a version only
    assert calls.count(("POST", "pipelines/upload_version")) == 2
    assert calls.count(("POST", "experiments")) == 1
    run = [r for r in fake_server.requests if r["path"].endswith("/runs")][-1]["body"]
    assert run["experiment_id"] == "experiment-1"
    assert run["pipeline_version_reference"]["pipeline_id"] == "pipeline-1"
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/root"
    upload = [r for r in fake_server.requests if r["path"].endswith("/pipelines/upload")][0]
    assert upload["query"]["name"] == ["graft-kfp"] and upload["multipart_fields"] == ["uploadfile"]


def test_schedule_creates_a_recurring_run_without_catchup_or_cache(compiled, fake_server):
    plan = client.make_plan(
        "schedule",
        compiled[0],
        "graft-kfp",
        "http://kfp.test:8080",
        "kubeflow",
        "retrain",
        "gs://bucket/root",
        enable_caching=False,
        cron_expression="0 0 2 * * *",
        max_concurrency=1,
        now=dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.timezone.utc),
    )
    assert plan.next_fire_times == [
        "2026-11-28T02:00:00+00:00",
        "2026-11-29T02:00:00+00:00",
        "2026-11-30T02:00:00+00:00",
    ]
    result = client.execute(plan)
    assert result["recurring_run_id"] == "recurring-1"
    body = [r for r in fake_server.requests if r["path"].endswith("/recurringruns")][0]["body"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body.get("pipeline_version_reference", {}).get("pipeline_version_id")
    assert body["runtime_config"]["pipeline_root"] == "gs://bucket/root"


@pytest.mark.parametrize(
    "expression,first",
    [
        ("0 0 2 * * *", "2026-11-28T02:00:00"),
        ("0 30 */6 * * *", "2026-11-28T06:30:00"),
        ("15 0 9 * * mon-fri", "2026-11-30T09:00:15"),  # 2026-11-28 is a Saturday
        ("0 0 0 1 jan,jul *", "2027-01-01T00:00:00"),
    ],
)
def test_cron_next_fire_times(expression, first):
    times = cron.next_fire_times(expression, dt.datetime(2026, 11, 28, 1, 0), 3)
    assert times[0].isoformat() == first
    assert len(times) == 3 and times[0] < times[1] < times[2]


@pytest.mark.parametrize(
    "expression,message",
    [
        ("0 2 * * *", "did you mean '0 0 2 * * *'"),
        ("0 0 25 * * *", "hour field: '25' is outside 0-23"),
        ("0 0 2 * *", "has 5 fields"),
        ("0 0 2 31 feb *", "never fires"),
        ("x 0 2 * * *", "second field: 'x' is not a number"),
        ("0 0 2 * * * *", "has 7 fields"),
    ],
)
def test_cron_rejects_with_a_reason(expression, message):
    with pytest.raises(cron.CronError, match=message.replace("*", r"\*").replace("(", r"\(")):
        cron.next_fire_times(expression, dt.datetime(2026, 11, 28), 3)


@pytest.mark.slow
def test_cli_dry_runs_print_what_would_be_sent(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline_name": "graft-kfp",
                "data_dir": "gs://bucket/images",
                "pipeline_root": "gs://bucket/root",
                "serving_dir": "gs://bucket/serving",
                "class_names": ["a", "b"],
                "kubeflow": {"output": str(tmp_path / "never.yaml"), "host": "http://kfp.test:8080"},
            }
        )
    )
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    result = subprocess.run(
        [graft, "kfp", "schedule", "--config", str(config), "--cron", "0 0 2 * * *", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    sent = json.loads(result.stdout[result.stdout.index("{") :])["would_send"]
    assert sent["cron_expression"] == "0 0 2 * * *" and len(sent["next_fire_times"]) == 3
    assert sent["catchup"] is False and sent["enable_caching"] is False
    assert not (tmp_path / "never.yaml").exists()
    # Caching off is compiled into every task: a version reference carries no caching option.
    spec, _ = compiler.load_compiled(sent["package"])
    assert {t.get("cachingOptions", {}).get("enableCache", False) for t in compiler.all_tasks(spec).values()} == {False}
    bad = subprocess.run(
        [graft, "kfp", "schedule", "--config", str(config), "--cron", "0 2 * * *", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert bad.returncode == 2 and "did you mean '0 0 2 * * *'" in bad.stderr


def test_cluster_commands_refuse_local_paths_by_name(tmp_path):
    """No pod reads this machine's disk: compile (and submit, schedule) refuse local paths, naming
    each; run-local takes them only with --local-paths."""
    config = tmp_path / "local.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": "gs://bucket/images",
                "pipeline_root": str(tmp_path / "root"),
                "serving_dir": "serving",
                "eval_data": str(tmp_path),  # a golden set the pods could not read either
                "class_names": ["a", "b"],
                "kubeflow": {"output": str(tmp_path / "never.yaml")},
            }
        )
    )
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    for command in (["compile"], ["submit", "--host", "http://kfp.test"], ["run-local"]):
        result = subprocess.run(
            [graft, "kfp", *command, "--config", str(config)], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert (
            f"pipeline_root '{tmp_path / 'root'}', serving_dir 'serving', eval_data '{tmp_path}' are local paths, "
            "which no pod of the cluster "
            "can read" in result.stderr
        ), result.stderr
        assert ("--local-paths" in result.stderr) is (command == ["run-local"])
    assert not (tmp_path / "never.yaml").exists()


def test_a_span_window_is_refused_for_kubeflow_with_what_to_do(tmp_path):
    """TFX's Kubeflow compiler has no span-range resolver: a window would not compile (or, worse,
    train on one span unsaid); the refusal says so before anything is compiled."""
    config = tmp_path / "window.yaml"
    values = {"data_dir": "gs://b/images", "spans": True, "span_window": 3, "pipeline_root": "gs://b/root"}
    config.write_text(yaml.safe_dump({**values, "class_names": ["a", "b"], "serving_dir": "gs://b/serving"}))
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    result = subprocess.run(
        [graft, "kfp", "compile", "--config", str(config), "--output", str(tmp_path / "never.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "span_window 3: TFX's Kubeflow compiler resolves no span range" in result.stderr, result.stderr
    assert "set span_window: 1 here, or run the window with graft run" in result.stderr
    assert not (tmp_path / "never.yaml").exists()


def test_compiled_beam_workers_follow_the_pods_cpu_request_and_env_names_the_target(tmp_path):
    settings = KubeflowSettings.from_dict({"component_cpu": 3, "target": "vertex", "image": "r.test/graft:2"})
    assert settings.beam_args == [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=3",
        "--sdk_container_image=r.test/graft:2",  # the code is in the image: TFX packages nothing
    ]
    assert KubeflowSettings.from_dict({"component_cpu": 0.5}).beam_args[1] == "--direct_num_workers=1"
    spec, _ = compiler.load_compiled(compiler.compile_pipeline(_config(), settings, str(tmp_path / "v.yaml")))
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert {"name": "GRAFT_TARGET", "value": "vertex"} in container["env"], label
        assert "--direct_num_workers=0" not in container.get("args", []), label
    assert "--direct_num_workers=3" in spec["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]


def test_compat_patches_make_tfx_read_what_the_oss_driver_sends(monkeypatch):
    monkeypatch.setenv("GRAFT_TARGET", "kfp")
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint
    from tfx.types import standard_artifacts
    from tfx.utils import path_utils

    from kubeflow import kfp_v2_compat

    original_dir = path_utils.serving_model_dir
    try:
        kfp_v2_compat.install()
        artifacts = pipeline_spec_pb2.ArtifactList(
            artifacts=[
                pipeline_spec_pb2.RuntimeArtifact(  # 1: system.* title
                    name="m", uri="gs://b/model", type=pipeline_spec_pb2.ArtifactTypeSchema(schema_title="system.Model")
                ),
            ]
        )
        untyped = pipeline_spec_pb2.RuntimeArtifact(  # 2 + 4: no type at all (today's driver), declared Examples
            name="12", uri="gs://b/examples"
        )
        untyped.metadata.update({"split_names": '["train", "eval"]'})
        blessing = pipeline_spec_pb2.RuntimeArtifact(  # 2 + 3: empty instance schema, metadata says ModelBlessing
            name="13", uri="gs://b/blessing", type=pipeline_spec_pb2.ArtifactTypeSchema(instance_schema="")
        )
        blessing.metadata.update({"blessed": 1})
        declared = pipeline_spec_pb2.RuntimeArtifact(  # 4: typed by the component's inputs spec
            name="s", uri="gs://b/schema", type=pipeline_spec_pb2.ArtifactTypeSchema(schema_title="system.Artifact")
        )
        kfp_v2_compat._inputs_spec_types.clear()
        kfp_v2_compat._inputs_spec_types.update(
            kfp_v2_compat.input_types_from_spec(
                json.dumps(
                    {
                        "artifacts": {
                            "schema": {"artifactType": {"instanceSchema": "title: tfx.Schema\ntype: object\n"}},
                            "examples": {"artifactType": {"instanceSchema": "title: tfx.Examples\ntype: object\n"}},
                        }
                    }
                )
            )
        )
        parsed = entrypoint.parse_raw_artifact_dict(
            {
                "model": artifacts,
                "examples": pipeline_spec_pb2.ArtifactList(artifacts=[untyped]),
                "schema": pipeline_spec_pb2.ArtifactList(artifacts=[declared]),
                "blessing": pipeline_spec_pb2.ArtifactList(artifacts=[blessing]),
            }
        )
        assert isinstance(parsed["model"][0], standard_artifacts.Model)
        assert isinstance(parsed["examples"][0], standard_artifacts.Examples)
        assert parsed["examples"][0].split_names == '["train", "eval"]'
        assert isinstance(parsed["schema"][0], standard_artifacts.Schema)
        assert isinstance(parsed["blessing"][0], standard_artifacts.ModelBlessing)
        # 3: statistics write split_names too; undeclared, they are refused by name, not read as Examples.
        statistics = pipeline_spec_pb2.RuntimeArtifact(name="14", uri="gs://b/statistics")
        statistics.metadata.update({"split_names": '["train", "eval"]', "span": 0})
        with pytest.raises(ValueError, match="'14' arrived without a type"):
            entrypoint.parse_raw_artifact_dict({"statistics": pipeline_spec_pb2.ArtifactList(artifacts=[statistics])})
        assert path_utils.serving_model_dir("gs://b/model") == "gs://b/model"  # 5: flat layout on OSS KFP
    finally:
        path_utils.serving_model_dir = original_dir


def test_first_run_serving_baseline_passes_tfx_kubeflow_entrypoint(tmp_path, monkeypatch):
    """Nothing serves yet: ServingBaseline must still hand TFX's Kubeflow entrypoint one output
    artifact (it calls get_single_instance on every output list), marked as 'nothing serving'."""
    import argparse

    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    from kubeflow import kfp_v2_compat

    monkeypatch.setenv("GRAFT_TARGET", "kfp")
    kfp_v2_compat.install()
    schema = "title: tfx.Model\ntype: object\n"
    output_file = tmp_path / "task" / "output_metadata.json"
    executor_input = {
        "inputs": {
            "parameterValues": {"serving_dir": str(tmp_path / "empty-serving")},
            "artifacts": {"model": {"artifacts": [{"name": "7", "uri": str(tmp_path / "model"), "metadata": {}}]}},
        },
        "outputs": {
            "artifacts": {
                "baseline_model": {
                    "artifacts": [
                        {
                            "name": "baseline_model",
                            "uri": str(tmp_path / "baseline"),
                            "type": {"instanceSchema": schema},
                        }
                    ]
                }
            },
            "outputFile": str(output_file),
        },
    }
    inputs_spec = {
        "artifacts": {"model": {"artifactType": {"instanceSchema": schema}}},
        "parameters": {"serving_dir": {"parameterType": "STRING"}},
    }
    args = argparse.Namespace(
        executor_class_path="components.serving_baseline.component.Executor",
        json_serialized_invocation_args=json.dumps(executor_input),
        json_serialized_inputs_spec_args=json.dumps(inputs_spec),
    )
    kubeflow_v2_run_executor._run_executor(args, [])
    [baseline] = json.loads(output_file.read_text())["artifacts"]["baseline_model"]["artifacts"]
    assert baseline["metadata"]["serving_version_dir"] == ""


def _upload(client, folder: str, prefix: str, files=None, change=None) -> str:
    return upload_images(client, S3_BUCKET, folder, prefix, files, change)


def _download(client, uri: str, target: str) -> str:
    """A folder of the S3 server copied to `target` (read here without TensorFlow's S3 filesystem)."""
    prefix = uri[len(f"s3://{S3_BUCKET}/") :].rstrip("/") + "/"
    for item in client.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix).get("Contents", []):
        local = os.path.join(target, item["Key"][len(prefix) :])
        os.makedirs(os.path.dirname(local), exist_ok=True)
        client.download_file(S3_BUCKET, item["Key"], local)
    return target


@pytest.mark.e2e
def test_run_local_executes_the_compiled_spec_as_open_source_kfp_would(tmp_path, tiny_digits_dir, s3):
    """graft kfp run-local with every path on an S3 server (the store open-source Kubeflow ships
    is MinIO, which speaks S3): every task of the compiled YAML in its own process through the
    image's command, its inputs downloaded as KFP's launcher does, artifacts handed over as KFP's
    driver does; the pushed model serves. The backbone is a TF Hub feature vector exported here:
    the 'unit' preprocessing family runs through a pipeline in this test (caffe in the
    messy-folder test, tf in the main one; every family's function against Keras' in test_preprocessing)."""
    from tests.conftest import (
        assert_signatures_agree,
        assert_transform_matches_keras,
        export_tiny_hub_feature_vector,
        small_training_config,
    )

    env, client = s3
    golden = [
        path
        for class_name in sorted(os.listdir(tiny_digits_dir))  # 4 training images per class, so dropped from training
        for path in sorted(glob.glob(os.path.join(tiny_digits_dir, class_name, "*.png")))[:4]
    ]
    config = small_training_config(
        tmp_path,
        data_dir=_upload(client, tiny_digits_dir, "kfp/data"),
        pipeline_root=f"s3://{S3_BUCKET}/kfp/root",
        serving_dir=f"s3://{S3_BUCKET}/kfp/serving",
        backbone="hub",
        weights=export_tiny_hub_feature_vector(str(tmp_path / "hub_fv")),
        backbone_kwargs={},
        stages="frozen",
        epochs=2,
        min_head_steps=0,  # 2 epochs, as said (small data's 300-step minimum: 100 epochs, a checkpoint each)
        learning_rate=0.01,  # and no range test
        min_accuracy=0.0,
        train_batchnorm=False,
        batchnorm_momentum=None,
        eval_data=_upload(client, tiny_digits_dir, "kfp/golden", golden),  # its own ExampleGen and Evaluator tasks
        class_names=["digit_0", "digit_1", "digit_7"],
    )
    # The tasks get no variable of this shell: the store's settings are compiled into them, the
    # credentials come from KFP's MinIO secret (its keys stood in for by this shell's variables).
    config["kubeflow"] = {
        "target": "kfp",
        "image": "registry.test/graft:1",
        "s3_endpoint": env["S3_ENDPOINT"],
        "s3_use_https": False,
        "s3_credentials_secret": "mlpipeline-minio-artifact",
        # Given flags, which the compiled S3 flags join; in-memory Beam for this tiny data (the
        # default, a worker process per requested CPU, costs each Beam stage their start-up).
        "beam_pipeline_args": ["--direct_running_mode=in_memory"],
    }
    path = tmp_path / "kfp.yaml"
    path.write_text(yaml.safe_dump(config))
    graft = os.path.join(os.path.dirname(sys.executable), "graft")

    def run_local(name: str, *options: str):
        summary_path = tmp_path / f"{name}.json"
        result = subprocess.run(
            [graft, "kfp", "run-local", "--config", str(path), "--summary-json", str(summary_path), *options],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return json.loads(summary_path.read_text()), result

    summary, result = run_local("first")
    spec, _ = compiler.load_compiled(summary["compiled"])
    assert set(summary["task_seconds"]) == set(compiler.all_tasks(spec)) - {compiler.BRANCH}  # every task ran
    assert summary["cache"]["ImageExampleGen"] == {"ran": "caching is off for this task", "same_key_as": None}
    assert f"--s3_endpoint_url={env['S3_ENDPOINT']}" in json.dumps(spec)  # Beam's stages reached the store
    # Its own files (compiled YAML, task logs) beside the metadata database, not in a folder 's3:'.
    assert summary["compiled"].startswith(str(tmp_path / "mlmd")) and not os.path.exists(os.path.join(REPO, "s3:"))
    assert summary["blessed"] and summary["pushed"] and summary["baseline_serving_version"] is None
    assert summary["ingest"]["accepted"] == 120 - 12 and summary["ingest"]["skipped"] == 12  # the golden images
    assert {"GoldenExampleGen", "GoldenEvaluator"} <= set(summary["task_seconds"])
    assert summary["golden"]["metrics"]["example_count"] == 12 and summary["golden"]["blessed"]
    model_dir = summary["pushed_model_dir"]
    assert model_dir.startswith(f"s3://{S3_BUCKET}/kfp/serving/")
    local_model = _download(client, model_dir, str(tmp_path / "pushed"))
    with open(os.path.join(local_model, PROVENANCE_FILE)) as f:  # the golden figures that let it through
        recorded = json.load(f)["golden"]
    assert (
        recorded["metrics"]["sparse_categorical_accuracy"]
        == summary["golden"]["metrics"]["sparse_categorical_accuracy"]
    )
    # The compiled Trainer asks for a GPU and checks for it in its pod; run-local says it does not here.
    assert "Trainer: its GPU request is not enforced by run-local" in result.stdout
    files = sorted(glob.glob(os.path.join(tiny_digits_dir, "*", "*.png")))[::20]
    assert_signatures_agree(local_model, files, 3)
    trainer_log = open(summary["task_logs"]["Trainer"], encoding="utf-8").read()
    assert "training hub" in trainer_log
    assert "kubeflow.kfp_entrypoint ... (forked)" in trainer_log  # the default engine on Linux
    transform_fns = {k["Key"] for k in client.list_objects_v2(Bucket=S3_BUCKET, Prefix="kfp/root/")["Contents"]}
    [graph] = {k.split("/transform_fn/")[0] for k in transform_fns if "/transform_fn/" in k}
    assert_transform_matches_keras(
        _download(client, f"s3://{S3_BUCKET}/{graph}", str(tmp_path / "graph")), "hub", files, 32
    )

    # New data behind the same path, every image inverted. ExampleGen's cache key is unchanged (the
    # cluster, caching it, would replay the first run's examples), so it runs uncached and reads the
    # new files; the RetrainGate's drift checks block them before training, and every task after it
    # is skipped by its trigger condition, as KFP's driver would skip it. (The gate's other refusal,
    # nothing new, takes the same branch: test_pipeline_e2e runs it.) Each task a fresh
    # interpreter this time (--engine process), as the first run's were forked.
    _upload(client, tiny_digits_dir, "kfp/data", change=lambda p: 255 - p)
    drifted, result = run_local("drifted", "--engine", "process")
    assert drifted["cache"]["ImageExampleGen"] == {
        "ran": "caching is off for this task",
        "same_key_as": summary["run_id"],
    }
    assert set(drifted["task_seconds"]) == {"ImageExampleGen", "RetrainGate"}, drifted["task_seconds"]
    assert set(drifted["skipped_tasks"]) == set(compiler.all_tasks(spec)) - {"ImageExampleGen", "RetrainGate"}
    assert f"{compiler.BRANCH} skipped: its condition is false" in result.stdout
    assert drifted["run_skipped_reason"].startswith("drift: the new data is not like"), drifted["run_skipped_reason"]
    assert drifted["drift"]["blocked"] and not drifted["pushed"]
    assert "image_brightness" in {c["feature"] for c in drifted["drift"]["checks"] if c["drifted"]}
    assert "(forked)" not in open(drifted["task_logs"]["RetrainGate"], encoding="utf-8").read()


def test_image_and_make_setup_install_through_one_script():
    """kubeflow/install.sh is the only install: the Dockerfile and `make setup` both run it, and
    neither calls pip itself, so the image and a developer's .venv cannot drift apart."""
    dockerfile = open(os.path.join(REPO, "kubeflow", "Dockerfile")).read()
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "bash kubeflow/install.sh python deps" in dockerfile
    assert "bash kubeflow/install.sh python project" in dockerfile
    assert "bash kubeflow/install.sh $(PY) all" in makefile
    for text in (dockerfile, makefile):
        assert "pip install" not in text
    compiled_command = compiler.EXECUTOR_COMMAND
    assert compiled_command == ["python", "-m", "kubeflow.kfp_entrypoint"]  # what run-local runs too


def _compiled_text_pipeline(tmp_path, **model) -> dict:
    """The compiled spec of a text pipeline whose data and outputs are on an object store."""
    config = GraftConfig(
        pipeline_name="graft-text",
        text_data="gs://bucket/reviews.csv",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving",
        class_names=["fresh", "rotten"],
        **model,
    )
    path = compiler.compile_pipeline(config, KubeflowSettings.from_dict({}), str(tmp_path / "text.yaml"))
    return compiler.load_compiled(path)[0]


def test_a_text_pipeline_compiles_with_its_example_gen(tmp_path):
    spec = _compiled_text_pipeline(tmp_path, backbone="text_scratch", weights="none")
    assert "TextExampleGen" in spec["root"]["dag"]["tasks"] and "ImageExampleGen" not in compiler.all_tasks(spec)
    example_gen = json.dumps(spec["root"]["dag"]["tasks"]["TextExampleGen"])
    assert "gs://bucket" in example_gen and "reviews.csv" in example_gen
    assert "/graft/schemas/text_classification/schema.pbtxt" in json.dumps(spec)
    # Transform's and the Evaluator's Beam workers (multi-processing by default) import
    # tensorflow-text before loading text graphs.
    assert "--beam_plugins=tensorflow_text" in json.dumps(spec)
    assert "--direct_running_mode=multi_processing" in json.dumps(spec)
    # Every container names its backend; the training step's also the GPUs it was given, checked at its start.
    for label, executor in spec["deploymentSpec"]["executors"].items():
        expected = [{"name": "GRAFT_TARGET", "value": "kfp"}]
        if label == "Trainer_executor":
            expected.append({"name": "GRAFT_TRAINER_GPUS", "value": "1"})
        assert executor["container"]["env"] == expected, label


def test_a_bert_pipeline_runs_its_containers_with_onednn_off(tmp_path):
    """TF 2.16's oneDNN kernels corrupt memory when attention runs on several threads (the
    Evaluator's): every container of a hub_bert pipeline starts with them off."""
    spec = _compiled_text_pipeline(
        tmp_path, backbone="hub_bert", weights="gs://bucket/encoder", text_preprocessor="gs://bucket/preprocess"
    )
    executors = spec["deploymentSpec"]["executors"].values()
    assert len(executors) == 10  # the RetrainGate is one of them
    assert all({"name": "TF_ENABLE_ONEDNN_OPTS", "value": "0"} in e["container"]["env"] for e in executors)
    assert "gs://bucket/preprocess" in json.dumps(spec)  # Transform's settings name the preprocessing model


def test_the_gpu_lock_pins_what_tensorflow_was_built_with():
    """requirements-gpu.lock holds TensorFlow 2.16.2's own `and-cuda` pins, and its CUDA runtime
    and cuDNN are the versions in TensorFlow's build info; the image installs and checks them."""
    import importlib.metadata

    import tensorflow as tf

    from kubeflow import gpu_libraries

    pins = gpu_libraries.read_lock()
    extra = [r for r in importlib.metadata.requires("tensorflow") if "extra == 'and-cuda'" in r]
    assert len(extra) == len(pins) == 12
    for requirement in extra:
        name, version = requirement.split(";")[0].replace(" ", "").split("==")
        assert pins[name] == version, name
    assert gpu_libraries.mismatches(tf.sysconfig.get_build_info(), pins) == []
    assert gpu_libraries.mismatches({"cuda_version": "12.3", "cudnn_version": "8"}, {}) == [
        "nvidia-cuda-runtime-cu12 not installed: TensorFlow was built with CUDA 12.3",
        "nvidia-cudnn-cu12 not installed: TensorFlow was built with cuDNN 8",
    ]
    assert gpu_libraries.mismatches(
        {"cuda_version": "12.3", "cudnn_version": "8"},
        {"nvidia-cuda-runtime-cu12": "12.4.127", "nvidia-cudnn-cu12": "9.1.0.70"},
    ) == [
        "nvidia-cuda-runtime-cu12 12.4.127: TensorFlow was built with CUDA 12.3",
        "nvidia-cudnn-cu12 9.1.0.70: TensorFlow was built with cuDNN 8",
    ]
    dockerfile = open(os.path.join(REPO, "kubeflow", "Dockerfile")).read()
    assert "ARG GPU=1" in dockerfile and "bash kubeflow/install.sh python gpu" in dockerfile
    assert "python -m kubeflow.gpu_libraries" in dockerfile
    # Here (no GPU wheels installed) the image's check names what is missing and fails.
    result = subprocess.run([sys.executable, "-m", "kubeflow.gpu_libraries"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "nvidia-cudnn-cu12 not installed" in result.stderr


def test_with_init_from_serving_kfp_never_replays_a_cached_trainer(tmp_path):
    """KFP's cache key (parameters, inputs) does not see what serves, and a compiled spec runs
    for months: with init_from serving the training tasks are never served from the cache."""
    from dataclasses import replace

    settings = KubeflowSettings.from_dict({})
    for init_from, cached in (("serving", False), ("backbone", True)):
        path = compiler.compile_pipeline(replace(_config(), init_from=init_from), settings, str(tmp_path / "s.yaml"))
        spec, _ = compiler.load_compiled(path)
        trainer = spec["components"][compiler.BRANCH]["dag"]["tasks"]["Trainer"]
        assert trainer.get("cachingOptions", {}).get("enableCache") is cached, init_from


def test_example_gen_tasks_always_read_their_data_even_with_caching_on(tmp_path):
    """ExampleGen's KFP cache key is its parameters: the same folder and {SPAN} pattern every
    night. Cached, a new span would never be read; compiled with caching on, the ExampleGen tasks
    still are not cached, and the tasks after them keep the cache (a new examples artifact is a
    new input to them)."""
    from dataclasses import replace

    config = replace(_config(), eval_data="gs://bucket/golden")
    spec, _ = compiler.load_compiled(
        compiler.compile_pipeline(config, KubeflowSettings.from_dict({}), str(tmp_path / "c.yaml"))
    )
    tasks = compiler.all_tasks(spec)
    caching = {name: task.get("cachingOptions", {}).get("enableCache") for name, task in tasks.items()}
    assert caching["ImageExampleGen"] is False and caching["GoldenExampleGen"] is False, caching
    assert caching["Transform"] is True and caching["Trainer"] is True, caching


@pytest.mark.parametrize(
    "given, added",
    [
        (["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/tmp"], True),
        (["--runner", "FlinkRunner", "--flink_master=flink:8081"], True),
        (["--runner=FlinkRunner", "--environment_type=EXTERNAL", "--environment_config=localhost:50000"], False),
        (["--runner=DataflowRunner", "--sdk_container_image=other/image:1"], False),
        (["--direct_running_mode=multi_processing"], True),  # in the pod too (no TFX sdist: see below)
    ],
)
def test_a_runner_beyond_the_pod_runs_its_workers_in_the_image(tmp_path, given, added):
    """Dataflow, Flink or Spark start Beam workers of their own, which need Graft's code: the
    compiled flags name the image as their SDK container, unless a worker environment is given."""
    settings = KubeflowSettings.from_dict({"image": "registry.test/graft:7", "beam_pipeline_args": given})
    assert settings.beam_args == given + (["--sdk_container_image=registry.test/graft:7"] if added else [])
    if added and "DataflowRunner" in given[0]:
        spec, _ = compiler.load_compiled(compiler.compile_pipeline(_config(), settings, str(tmp_path / "d.yaml")))
        args = spec["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]
        assert "--sdk_container_image=registry.test/graft:7" in args and "--runner=DataflowRunner" in args


def test_the_images_beam_boot_is_the_locked_beam():
    """The Dockerfile copies Beam's worker boot from the SDK image of the Beam version the lock pins."""
    dockerfile = open(os.path.join(REPO, "kubeflow", "Dockerfile")).read()
    locked = re.search(r"^apache-beam==(\S+)", open(os.path.join(REPO, "requirements.lock")).read(), re.M).group(1)
    assert f"ARG BEAM_VERSION={locked}\n" in dockerfile
    assert "ARG BEAM_SDK_IMAGE=apache/beam_python3.10_sdk:${BEAM_VERSION}\nFROM ${BEAM_SDK_IMAGE} AS beam" in dockerfile
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in dockerfile
    assert dockerfile.rstrip().endswith('ENTRYPOINT ["/opt/apache/beam/boot"]')


def test_every_executor_reaches_kubeflows_minio_with_the_credentials_secret(tmp_path):
    """s3:// storage on Kubeflow's own MinIO: each executor's env names the endpoint, and the
    platform section puts the credentials from KFP's secret in it (kfp-kubernetes secretAsEnv)."""
    from dataclasses import replace

    from kfp.kubernetes import kubernetes_executor_config_pb2

    settings = KubeflowSettings.from_dict(
        {
            "s3_endpoint": "minio-service.kubeflow:9000",
            "s3_use_https": False,
            "s3_credentials_secret": "mlpipeline-minio-artifact",
            "trainer_tolerations": [TOLERATION],
        }
    )
    config = replace(_config(), pipeline_root="s3://mlpipeline/graft", serving_dir="s3://mlpipeline/serving")
    spec, platform = compiler.load_compiled(compiler.compile_pipeline(config, settings, str(tmp_path / "m.yaml")))
    containers = {k: e["container"] for k, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(containers)
    for label, container in containers.items():
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["S3_ENDPOINT"] == "minio-service.kubeflow:9000" and env["S3_USE_HTTPS"] == "0", label
        parsed = json_format.ParseDict(executors[label], kubernetes_executor_config_pb2.KubernetesExecutorConfig())
        [secret] = parsed.secret_as_env
        assert secret.secret_name == "mlpipeline-minio-artifact"
        assert [(k.secret_key, k.env_var) for k in secret.key_to_env] == [
            ("accesskey", "AWS_ACCESS_KEY_ID"),
            ("secretkey", "AWS_SECRET_ACCESS_KEY"),
        ]
        assert bool(parsed.tolerations) is (label == "Trainer_executor"), label  # only training gets the GPU nodes
    with pytest.raises(ConfigError, match="s3_credentials_secret: a Kubernetes secret reaches the pods"):
        KubeflowSettings.from_dict({"target": "vertex", "s3_credentials_secret": "s"})


def test_a_beam_task_in_its_pod_builds_no_package_of_tfx():
    """TFX's Beam executors build an sdist of TFX for Beam's workers unless a flag says where the
    code is (seconds of every Beam task, measured 1.6 s in each of run-local's, for workers that
    are the pod's own Python). The compiled flags, default or given, always say: the image."""
    from tfx.utils import dependency_utils

    for given in (None, ["--direct_running_mode=in_memory"]):
        args = KubeflowSettings.from_dict({"image": "r.test/graft:2", "beam_pipeline_args": given}).beam_args
        assert "--sdk_container_image=r.test/graft:2" in args, args
        assert dependency_utils.make_beam_dependency_flags(args) == args  # TFX's own check: nothing added
    named = ["--environment_type=LOOPBACK"]  # a worker environment the flags name is kept, alone
    assert KubeflowSettings.from_dict({"beam_pipeline_args": named}).beam_args == named


def test_beam_flags_given_in_the_config_still_reach_the_s3_endpoint():
    """Beam's own S3 filesystem needs the endpoint whatever runner the flags name (it had it only
    with the default flags: given flags lost it, and every Beam stage would look for AWS S3)."""
    given = ["--direct_running_mode=in_memory", "--beam_plugins=tensorflow_text"]
    settings = KubeflowSettings.from_dict(
        {"s3_endpoint": "minio-service.kubeflow:9000", "s3_use_https": False, "beam_pipeline_args": given}
    )
    assert settings.beam_args == given + [
        "--sdk_container_image=graft:latest",
        "--s3_endpoint_url=http://minio-service.kubeflow:9000",
        "--s3_region_name=us-east-1",
        "--beam_plugins=components.beam_s3",
    ]
    mine = given + ["--s3_endpoint_url=https://s3.example:443"]
    assert KubeflowSettings.from_dict({"s3_endpoint": "x:1", "beam_pipeline_args": mine}).beam_args == mine + [
        "--sdk_container_image=graft:latest",
        "--s3_region_name=us-east-1",
        "--beam_plugins=components.beam_s3",
    ]


def test_vertex_refuses_s3_paths_by_name(tmp_path):
    """Vertex AI keeps artifacts on Cloud Storage and cannot hand its pods S3 credentials: a
    vertex target with s3:// (or minio://) paths is refused at compile and in run-local, naming
    them, before anything is written."""
    config = tmp_path / "vertex.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": "minio://mlpipeline/images",
                "pipeline_root": "s3://mlpipeline/root",
                "serving_dir": "gs://bucket/serving",
                "class_names": ["a", "b"],
                "kubeflow": {"target": "vertex", "output": str(tmp_path / "never.yaml")},
            }
        )
    )
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    for command in (["compile"], ["run-local"]):
        result = subprocess.run(
            [graft, "kfp", *command, "--config", str(config)], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert (
            "kubeflow.target vertex: pipeline_root 's3://mlpipeline/root', data_dir 's3://mlpipeline/images' on S3"
            in result.stderr
        ), result.stderr
    assert not (tmp_path / "never.yaml").exists()


def test_run_local_refuses_a_beam_runner_beyond_the_task_and_docker_refuses_this_machines_files(tmp_path):
    """run-local runs the compiled Beam flags in each task: a Dataflow (or Flink, Spark) runner
    would start real jobs from this machine, so it is refused by name. In containers, nothing of
    this machine is mounted: a local weights file is refused like a local data path."""
    weights = tmp_path / "backbone.h5"
    weights.write_bytes(b"not read")
    settings = {"data_dir": "s3://b/images", "pipeline_root": "s3://b/root", "serving_dir": "s3://b/serving"}
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    for name, extra, flags, expected in (
        (
            "dataflow",
            {"kubeflow": {"beam_pipeline_args": ["--runner=DataflowRunner", "--project=p"]}},
            [],
            "kubeflow.beam_pipeline_args names --runner=DataflowRunner: run-local runs each task's Beam stages",
        ),
        ("weights", {"weights": str(weights)}, ["--engine", "docker"], f"--engine docker: weights '{weights}' cannot"),
    ):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**settings, "class_names": ["a", "b"], **extra}))
        result = subprocess.run(
            [graft, "kfp", "run-local", "--config", str(config), *flags],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        assert result.returncode == 2 and expected in result.stderr, (name, result.stderr[-2000:])
