"""run-local's backend on a two-task spec whose command is a small Python module
(tests/run_local_task.py): what KFP's driver and launcher do between tasks (metadata through ML
Metadata, typed inputs, the execution cache, the pod's environment), checked on what the
commands actually received. The whole
pipeline through run-local: test_kubeflow.py's e2e test."""

import json
import os

import pytest

from kubeflow import kfp_driver, run_local


def _spec(size: int, produced: dict) -> dict:
    def executor(metadata):
        return {
            "container": {
                "image": "registry.test/graft:1",
                "command": ["python", "-m", "tests.run_local_task"],
                "args": ["{{$}}"],
                "env": [{"name": "PRODUCE", "value": json.dumps(metadata)}, {"name": "GRAFT_TARGET", "value": "kfp"}],
            }
        }

    def component(label, output):
        return {
            "executorLabel": label,
            "outputDefinitions": {"artifacts": {output: {"artifactType": {"schemaTitle": "tfx.Examples"}}}},
        }

    return {
        "root": {
            "dag": {
                "tasks": {
                    "Producer": {
                        "componentRef": {"name": "comp-producer"},
                        "inputs": {"parameters": {"size": {"runtimeValue": {"constant": size}}}},
                        "cachingOptions": {"enableCache": True},
                    },
                    "Consumer": {
                        "componentRef": {"name": "comp-consumer"},
                        "dependentTasks": ["Producer"],
                        "inputs": {
                            "artifacts": {
                                "data": {
                                    "taskOutputArtifact": {"producerTask": "Producer", "outputArtifactKey": "data"}
                                }
                            }
                        },
                        "cachingOptions": {"enableCache": True},
                    },
                }
            }
        },
        "components": {
            "comp-producer": component("exec-producer", "data"),
            "comp-consumer": component("exec-consumer", "result"),
        },
        "deploymentSpec": {
            "executors": {"exec-producer": executor(produced), "exec-consumer": executor({"done": True})}
        },
    }


_PLATFORM = {
    "platforms": {
        "kubernetes": {
            "deploymentSpec": {
                "executors": {
                    "exec-consumer": {
                        "secretAsEnv": [
                            {
                                "secretName": "mlpipeline-minio-artifact",
                                "keyToEnv": [{"secretKey": "accesskey", "envVar": "AWS_ACCESS_KEY_ID"}],
                            }
                        ]
                    }
                }
            }
        }
    }
}


def _run(tmp_path, spec) -> run_local.LocalBackend:
    backend = run_local.LocalBackend(
        spec, str(tmp_path / "root"), str(tmp_path / "work"), "kfp", say=lambda _: None, platform=_PLATFORM
    )
    backend.run()
    return backend


def _received(backend, task) -> dict:
    with open(
        os.path.join(backend.tasks[task].outputs[next(iter(backend.tasks[task].outputs))]["uri"], "received.json")
    ) as f:
        return json.load(f)


def test_metadata_comes_back_as_kfps_driver_returns_it_typed_with_an_empty_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_ONLY_IN_THIS_SHELL", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-secret")
    backend = _run(tmp_path, _spec(3, {"blessed": True, "classes": ["a", "b"], "count": 3, "name": "x"}))
    [handed] = _received(backend, "Consumer")["input"]["artifacts"]["data"]["artifacts"]
    assert handed["name"] == str(backend.tasks["Producer"].outputs["data"]["id"])  # the metadata id
    assert handed["type"] == {"instanceSchema": ""}
    # bool -> int 1 -> number; int -> double; a list wrapped; display_name added by the launcher.
    assert handed["metadata"] == {
        "blessed": 1.0,
        "classes": {"list": ["a", "b"]},
        "count": 3.0,
        "name": "x",
        "display_name": "data",
    }
    env = _received(backend, "Consumer")["env"]
    assert "GRAFT_ONLY_IN_THIS_SHELL" not in env  # only the image's, the compiled and the secret's
    assert env["TF_USE_LEGACY_KERAS"] == "1" and env["GRAFT_TARGET"] == "kfp"  # the Dockerfile's ENV, the compiled env
    assert env["AWS_ACCESS_KEY_ID"] == "from-the-secret"
    assert "AWS_ACCESS_KEY_ID" not in _received(backend, "Producer")["env"]  # its pod has no secret


def test_a_null_in_output_metadata_fails_the_task_as_the_launcher_does(tmp_path):
    with pytest.raises(run_local.TaskFailed, match=r"task Producer.*metadata field 'note' is None"):
        _run(tmp_path, _spec(3, {"note": None}))


def test_kfps_cache_reuses_a_task_whose_key_matches_and_says_why_the_others_ran(tmp_path):
    first = _run(tmp_path, _spec(3, {"count": 3}))
    assert first.cache == {
        "Producer": {"ran": "no earlier execution of this task"},
        "Consumer": {"ran": "no earlier execution of this task"},
    }

    second = _run(tmp_path, _spec(3, {"count": 3}))  # the same spec: both keys match
    assert second.cache == {"Producer": {"reused_from": first.run_id}, "Consumer": {"reused_from": first.run_id}}
    assert second.tasks["Consumer"].outputs == first.tasks["Consumer"].outputs  # the same artifacts, ids and all
    assert not os.path.exists(os.path.join(second.task_dir, "Producer", "log.txt"))  # nothing ran

    third = _run(tmp_path, _spec(4, {"count": 3}))  # a parameter changed: a new artifact downstream
    new_id = third.tasks["Producer"].outputs["data"]["id"]
    assert new_id > first.tasks["Consumer"].outputs["result"]["id"]  # ids are never reused across runs
    assert third.cache == {
        "Producer": {"ran": "parameter size changed"},
        "Consumer": {"ran": f"input data is a new artifact ({new_id})"},
    }
    with open(os.path.join(tmp_path, "work", run_local.METADATA_FILE)) as f:
        assert len(json.load(f)["scopes"]["kfp:"]["executions"]) == 4  # two keys per task


def test_a_task_with_caching_off_always_runs_and_says_when_the_cluster_would_have_replayed_it(tmp_path):
    spec = _spec(3, {"count": 3})
    spec["root"]["dag"]["tasks"]["Producer"]["cachingOptions"] = {"enableCache": False}
    first = _run(tmp_path, spec)
    second = _run(tmp_path, spec)
    assert second.cache["Producer"] == {"ran": "caching is off for this task", "same_key_as": first.run_id}
    # Its output is a new artifact, so the task after it misses the cache.
    assert second.cache["Consumer"]["ran"].startswith("input data is a new artifact")


def test_the_cache_is_kept_per_target_and_one_run_holds_the_work_folder(tmp_path):
    """KFP scopes its cache per pipeline, and the two backends share none: a vertex run does not
    replay a kfp run's outputs. Two run-locals on one work folder would hand out the same ids."""
    spec = _spec(3, {"count": 3})
    _run(tmp_path, spec)
    vertex = run_local.LocalBackend(spec, str(tmp_path / "root"), str(tmp_path / "work"), "vertex", say=lambda _: None)
    vertex.run()
    assert vertex.cache["Producer"] == {"ran": "no earlier execution of this task"}
    with vertex.store.opened():
        with pytest.raises(kfp_driver.WorkFolderBusy, match="another graft kfp run-local is running with the work"):
            _run(tmp_path, spec)


def test_cache_keys_are_the_fields_kfps_driver_hashes():
    model = {"type": {"schemaTitle": "tfx.Model"}, "metadata": {}}
    base = ({"data": ["7"]}, {"size": 3}, {"result": model}, "img:1", ["python", "{{$}}"])
    key = kfp_driver.cache_key(*base)
    assert kfp_driver.fingerprint(kfp_driver.cache_key(*base)) == kfp_driver.fingerprint(key)
    for position, other in (
        (0, {"data": ["8"]}),  # a new input artifact
        (1, {"size": 4}),  # a parameter
        (2, {"result": {**model, "type": {"schemaTitle": "tfx.Examples"}}}),  # an output's type
        (2, {"result": {**model, "metadata": {"span": 2.0}}}),  # its metadata (a driver hook's)
        (3, "img:2"),  # the image
        (4, ["python", "-m", "x", "{{$}}"]),  # the command
    ):
        changed = kfp_driver.cache_key(*base[:position], other, *base[position + 1 :])
        assert kfp_driver.fingerprint(changed) != kfp_driver.fingerprint(key), position
    with_parameter = kfp_driver.cache_key(*base, {"accuracy": "NUMBER_DOUBLE"})  # an output parameter
    assert kfp_driver.fingerprint(with_parameter) != kfp_driver.fingerprint(key)


def test_a_docker_task_runs_the_image_with_its_command_and_nothing_of_this_machine_but_its_outputs(tmp_path):
    """--engine docker: the compiled image, the command as the pod's (replacing the entrypoint),
    the image's own paths in its parameters, the compiled env and secrets as -e, the host's
    network (the object store), and no mount but the launcher's output-metadata folder."""
    spec = _spec(3, {"count": 3})
    spec["root"]["dag"]["tasks"]["Producer"]["inputs"]["parameters"]["schema"] = {
        "runtimeValue": {"constant": "/graft/schemas/image_classification/schema.pbtxt"}
    }
    backend = run_local.LocalBackend(spec, "s3://b/root", str(tmp_path), "kfp", say=lambda _: None, engine="docker")
    executor_input = backend.executor_input("Producer", spec["root"]["dag"]["tasks"]["Producer"], {})
    assert executor_input["inputs"]["parameterValues"]["schema"].startswith("/graft/")  # the image's copy
    assert executor_input["outputs"]["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    container = spec["deploymentSpec"]["executors"]["exec-producer"]["container"]
    command = backend._command(container, executor_input)
    assert command[0] == "python"  # the image's Python, not this machine's
    run = backend._in_container("Producer", container["image"], command, {"PRODUCE": "{}"})
    assert run[:4] == ["docker", "run", "--rm", "--network"] and run[4] == "host"
    assert [run[i + 1] for i, part in enumerate(run) if part == "-v"] == [
        f"{backend._outputs('Producer')}:/tmp/kfp_outputs"
    ]
    assert run[run.index("-e") + 1] == "PRODUCE"  # by name: its value (a credential, say) stays out of `ps`
    image_at = run.index("registry.test/graft:1")
    assert run[image_at - 2 : image_at] == ["--entrypoint", "python"] and run[image_at + 1 :] == command[1:]
    # In a process, the same parameter is this checkout's file.
    local = run_local.LocalBackend(spec, "s3://b/root", str(tmp_path), "kfp", say=lambda _: None)
    assert local.executor_input("Producer", spec["root"]["dag"]["tasks"]["Producer"], {})["inputs"]["parameterValues"][
        "schema"
    ] == os.path.join(run_local._REPO_DIR, "schemas/image_classification/schema.pbtxt")
