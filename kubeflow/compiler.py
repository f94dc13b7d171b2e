"""Compiles Graft's pipeline (pipeline/pipeline.py, the same as locally) for Kubeflow Pipelines v2.

TFX's KubeflowV2DagRunner writes the PipelineSpec as YAML with schema 2.1.0 (the open-source
KFP server accepts only that, and its client only a bare PipelineSpec). Resources go through
`with_platform_config`; the Trainer's node selector and tolerations, which TFX cannot express,
are added as the Kubernetes platform document that kfp-kubernetes would write.
"""

from __future__ import annotations

import dataclasses
import os

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from components.contract import EXPECTED_GPUS_ENV
from kubeflow.settings import KubeflowSettings
from pipeline.config import GraftConfig
from pipeline.pipeline import create_pipeline

TRAINER_ID = "Trainer"
RETRAIN_GATE_ID = "RetrainGate"
EXAMPLE_GEN_SUFFIX = "ExampleGen"  # ImageExampleGen, TextExampleGen, ImportExampleGen, GoldenExampleGen
TARGET_ENV = "GRAFT_TARGET"  # kfp | vertex, read by kubeflow/kfp_v2_compat.py
TRAINING_IDS = (TRAINER_ID, "Tuner")  # the steps that train: the accelerator, its nodes and resources
IMAGE_REPO_DIR = "/graft"  # where kubeflow/Dockerfile puts this repository
# TFX's executor entrypoint, wrapped to apply kubeflow/kfp_v2_compat.py first.
EXECUTOR_COMMAND = ["python", "-m", "kubeflow.kfp_entrypoint"]
_REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resource_spec(cpu: float, memory_gb: float, accelerator_type: str = "", accelerator_count: int = 0):
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=cpu, memory_limit=memory_gb
    )
    if accelerator_count:
        spec.accelerator.type = accelerator_type
        spec.accelerator.count = accelerator_count
    return spec


def executor_label(node_id: str) -> str:
    return f"{node_id}_executor"


def platform_document(
    settings: KubeflowSettings, present: tuple = (TRAINER_ID,), all_executors: tuple = ()
) -> dict | None:
    """The kfp-kubernetes platform section, or None: the node selector and tolerations of the
    executors that train (Trainer, Tuner, those `present`), and the S3 credentials secret as env
    for every executor (`all_executors`: their labels)."""
    training = {}
    if settings.trainer_node_selector:
        training["nodeSelector"] = {"labels": dict(settings.trainer_node_selector)}
    if settings.trainer_tolerations:
        training["tolerations"] = [dict(t) for t in settings.trainer_tolerations]
    executors = {executor_label(node): dict(training) for node in TRAINING_IDS if node in present and training}
    secret = settings.s3_secret_env
    for label in all_executors if secret else ():
        executors.setdefault(label, {})["secretAsEnv"] = [secret]
    if not executors:
        return None
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def _in_image(config: GraftConfig) -> GraftConfig:
    """Paths inside this checkout (the curated schemas) as the image sees them."""
    schema_dir = config.schema_dir
    if schema_dir and os.path.abspath(schema_dir).startswith(_REPO_DIR + os.sep):
        schema_dir = IMAGE_REPO_DIR + os.path.abspath(schema_dir)[len(_REPO_DIR) :]
    return dataclasses.replace(config, schema_dir=schema_dir)


def build_pipeline(config: GraftConfig, settings: KubeflowSettings):
    """The local DAG with Kubeflow runner settings: resources per component, the accelerator
    on the steps that train (Trainer, Tuner), Beam arguments from the settings."""
    tfx_pipeline = create_pipeline(_in_image(config), beam_pipeline_args=settings.beam_args)
    for component in tfx_pipeline.components:
        if component.id in TRAINING_IDS:
            component.with_platform_config(
                _resource_spec(
                    settings.trainer_cpu,
                    settings.trainer_memory_gb,
                    settings.accelerator_type,
                    settings.trainer_accelerator_count,
                )
            )
        else:
            component.with_platform_config(_resource_spec(settings.component_cpu, settings.component_memory_gb))
    return tfx_pipeline


BRANCH = "retrain-branch"  # the sub-DAG of every task after the RetrainGate


def condition_branch(spec: dict) -> None:
    """Moves the tasks that carry a trigger condition (TFX compiles `tfx.dsl.Cond` onto each task)
    into one sub-DAG whose task carries the condition, as KFP's own compiler builds `dsl.If`.

    KFP's container driver resolves a task's inputs before it evaluates the task's condition
    (backend/src/v2/driver/driver.go, `Container`): Transform, gated like ImportSchemaGen whose
    schema it reads, would fail resolving an output that a skipped task never produced. A skipped
    sub-DAG's tasks are never driven at all; its inputs come from tasks that ran (ExampleGen, the gate)."""
    tasks = spec["root"]["dag"]["tasks"]
    gated = {name: task for name, task in tasks.items() if task.get("triggerPolicy", {}).get("condition")}
    if not gated:
        return
    conditions, branch_inputs = set(), {}
    for task in gated.values():
        condition = task.pop("triggerPolicy")["condition"]
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            if producer["producerTask"] in gated:
                continue
            name = f"{producer['producerTask']}-{producer['outputArtifactKey']}"
            branch_inputs[name] = producer
            task["inputs"]["artifacts"][key] = {"componentInputArtifact": name}
            condition = condition.replace(f"inputs.artifacts['{key}']", f"inputs.artifacts['{name}']")
        conditions.add(condition)
        task["dependentTasks"] = [t for t in task.get("dependentTasks", []) if t in gated]
        if not task["dependentTasks"]:
            del task["dependentTasks"]
    if len(conditions) != 1:
        raise ValueError(f"the gated tasks carry different conditions, expected one: {sorted(conditions)}")

    def artifact_type(producer: dict) -> dict:
        component = spec["components"][tasks[producer["producerTask"]]["componentRef"]["name"]]
        return component["outputDefinitions"]["artifacts"][producer["outputArtifactKey"]]["artifactType"]

    spec["components"][BRANCH] = {
        "dag": {"tasks": gated},
        "inputDefinitions": {"artifacts": {n: {"artifactType": artifact_type(p)} for n, p in branch_inputs.items()}},
    }
    for name in gated:
        del tasks[name]
    tasks[BRANCH] = {
        "componentRef": {"name": BRANCH},
        "dependentTasks": sorted({p["producerTask"] for p in branch_inputs.values()}),
        "inputs": {"artifacts": {n: {"taskOutputArtifact": p} for n, p in branch_inputs.items()}},
        "taskInfo": {"name": BRANCH},
        "triggerPolicy": {"condition": conditions.pop()},
    }


def all_tasks(spec: dict) -> dict:
    """{task name: task spec} of the root DAG and of every sub-DAG in it."""
    found = {}
    pending = [spec["root"]["dag"]["tasks"]]
    while pending:
        for name, task in pending.pop().items():
            found[name] = task
            component = spec["components"].get(task["componentRef"]["name"], {})
            if "dag" in component:
                pending.append(component["dag"]["tasks"])
    return found


def compile_pipeline(config: GraftConfig, settings: KubeflowSettings, output_path: str) -> str:
    """Writes the PipelineSpec YAML (plus the platform document) to `output_path`, whole or not at all."""
    output_path = os.path.abspath(output_path)
    directory, name = os.path.split(output_path)
    staging_name = f".{name}.partial.yaml"
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=settings.image, default_commands=EXECUTOR_COMMAND, use_pipeline_spec_2_1=True
        ),
        output_dir=directory,
        output_filename=staging_name,
    )
    runner.run(build_pipeline(config, settings))
    staging = os.path.join(directory, staging_name)
    with open(staging, encoding="utf-8") as f:
        text = f.read()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    spec = yaml.safe_load(text)
    # TFX builds FileBasedExampleGen's container (driver hook included) without the node's
    # platform_config: give it the component resources like every other step.
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        if "container" in executor:
            # The backend the spec was compiled for, from the spec itself: kfp_v2_compat reads
            # it, and an image run by the other backend must not guess.
            env = {TARGET_ENV: settings.target, **config.runtime_env, **settings.s3_env}
            container.setdefault("env", []).extend({"name": k, "value": v} for k, v in env.items())
        if "resources" not in container:
            container["resources"] = {
                "cpuLimit": float(settings.component_cpu),
                "memoryLimit": float(settings.component_memory_gb),
            }
    # The gate decides against what serves when it runs: a cached decision (KFP's key is its
    # parameters and inputs, unchanged between two nights with no new data) would replay a stale one.
    spec["root"]["dag"]["tasks"].get(RETRAIN_GATE_ID, {})["cachingOptions"] = {"enableCache": False}
    # ExampleGen's key is its parameters, the same every night (a folder, a {SPAN} pattern): cached,
    # a new span or new files behind the same path would never be read. TFX's local runner keys it
    # on the data's fingerprint, which KFP cannot see; so it always reads, and the gate (whose
    # input is then a new artifact) decides whether anything after it runs.
    for name, task in spec["root"]["dag"]["tasks"].items():
        if name.endswith(EXAMPLE_GEN_SUFFIX):
            task["cachingOptions"] = {"enableCache": False}
    if config.init_from == "serving":
        # Training continues the model that serves when it runs, which KFP's key does not see
        # (the local runner puts it in the Trainer's settings; a compiled spec is run for months).
        for node in TRAINING_IDS:
            if node in spec["root"]["dag"]["tasks"]:
                spec["root"]["dag"]["tasks"][node]["cachingOptions"] = {"enableCache": False}
    condition_branch(spec)
    for node in TRAINING_IDS:  # the training steps check that TensorFlow sees the GPUs they were given
        executor = spec["deploymentSpec"]["executors"].get(executor_label(node))
        if executor and settings.trainer_accelerator_count:
            executor["container"].setdefault("env", []).append(
                {"name": EXPECTED_GPUS_ENV, "value": str(settings.trainer_accelerator_count)}
            )
    documents = [spec]
    present = tuple(n for n in TRAINING_IDS if executor_label(n) in spec["deploymentSpec"]["executors"])
    labels = tuple(sorted(label for label, e in spec["deploymentSpec"]["executors"].items() if "container" in e))
    platform = platform_document(settings, present, labels) if settings.target == "kfp" else None
    if platform:
        documents.append(platform)
    with open(staging, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump_all(documents, f, sort_keys=True)
    os.replace(staging, output_path)
    return output_path


def load_compiled(path: str) -> tuple[dict, dict | None]:
    """(pipeline spec, platform document or None) from a compiled YAML."""
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    return documents[0], (documents[1] if len(documents) > 1 else None)
