"""`graft kfp run-local`: the compiled PipelineSpec executed task by task on this machine.

What a Kubeflow backend does around each container, done here (references: KFP's
backend/src/v2/driver/driver.go `provisionOutputs`, metadata/converter.go `toRuntimeArtifact`,
component/launcher_v2.go `uploadOutputArtifacts`/`mergeRuntimeArtifacts`; TFX's
kubeflow_v2_run_executor.py and file_based_example_gen/driver.py):

- tasks run in dependency order (`dependentTasks`), each as its own container command from
  `deploymentSpec` (`python -m kubeflow.kfp_entrypoint ...`, the image's entrypoint, with the
  compiled Beam flags: workers from the pod's CPU request) in a process of its own, with `{{$}}`
  replaced by the task's ExecutorInput JSON. By default (`--engine fork`, Linux) that process is
  forked from one that ran the command module's leading imports, and nothing else of it, under
  the task's exact environment (kubeflow/fork_server.py): TFX's ~6 s of imports once a run, not
  once a task; `--engine process` starts a fresh interpreter for each;
- the ExecutorInput holds the task's parameters (the spec's constants), its input artifacts
  (what upstream tasks produced) and its output artifacts, provisioned at
  `<pipeline root>/<run id>/<task>/<output key>`, with an output metadata file per task;
- after a task, its ExecutorOutput is merged into its output artifacts (URI and metadata), which
  downstream tasks then receive;
- a task with a trigger condition (TFX's `Cond`, compiled to CEL such as
  `inputs.artifacts['decision'].artifacts[0].metadata['retrain'] == 1.0`; Graft's compiler puts
  the gated tasks in one sub-DAG carrying it) runs only when it holds, its inputs resolved first
  as the driver does; a skipped sub-DAG's tasks are all skipped.

The two targets hand artifacts over as their backends do. `kfp` (open-source Kubeflow
Pipelines): inputs arrive typed `instanceSchema: ""`, named by a numeric metadata id, their
metadata the artifact's custom properties; lifecycle hooks are not run (the backend has none), so ImageExampleGen
resolves {SPAN} itself. `vertex` (Vertex AI Pipelines): inputs arrive typed, with resource
names, and the ExampleGen driver hook (`lifecycle.preCacheCheck`) runs before the executor.

- `kfp`: before a task's command, each input artifact on an object store is downloaded as the
  open-source launcher 2.0-2.3 does it (kubeflow/launcher.py), whose failure fails the task.
- `kfp`: output metadata goes through ML Metadata as the launcher stores it and comes back as
  the driver returns it (kubeflow/kfp_driver.py: bools as 1/0, a null fails the task).
- KFP's execution cache: each task's cache key (kubeflow/kfp_driver.py) is computed; a task with
  caching on whose key a completed execution of an earlier run-local had is not run, its outputs
  are that execution's (artifact ids persist in the work folder's kfp-metadata.json, as in ML
  Metadata). The summary's `cache` says, per task, what was reused and why the rest ran.
- Each task's environment is the image's (the ENV of kubeflow/Dockerfile), the compiled `env`,
  and the credentials secret of the platform section, whose keys are taken from this shell's
  variables of the same names: nothing else of this shell reaches a task.

- `--engine docker`: each task is a container of the compiled image (nothing of this machine
  mounted but the launcher's output-metadata folder), instead of a process of this checkout.

Not emulated: the cluster's scheduling (resources, GPUs, node selectors, tolerations are
ignored), Beam runners beyond the pod (refused by `graft kfp run-local`), and the launcher's
upload of outputs from a local mount path (`/s3/<bucket>/...`): TFX writes each artifact at its
URI itself, so that upload finds nothing (KFP lets a task produce no local files).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from components import files
from components.contract import EXPECTED_GPUS_ENV, INGEST_DIR, INGEST_REPORT_FILE, SERVING_VERSION_PROPERTY
from components.evaluator.results import judgement, read_evaluation
from kubeflow import fork_server, kfp_driver, launcher
from kubeflow.compiler import IMAGE_REPO_DIR, load_compiled

_REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ("kfp", "vertex")
_PLACEHOLDER = "{{$}}"
_OUTPUT_METADATA = "output_metadata.json"
_POD_OUTPUTS = "/tmp/kfp_outputs"  # where KFP's launcher has a task write its output metadata
ENGINES = fork_server.ENGINES
DEFAULT_ENGINE = ENGINES[0]
# What a task process takes from this machine, as a pod takes it from its node, its runtime or
# workload identity; nothing else of this shell reaches a task.
_FROM_THE_NODE = (
    "PATH", "HOME", "TMPDIR", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GOOGLE_APPLICATION_CREDENTIALS",
)  # fmt: skip
METADATA_FILE = "kfp-metadata.json"  # in the work folder: artifact ids and the cache, kept between runs
_DOCKERFILE = os.path.join(_REPO_DIR, "kubeflow", "Dockerfile")


# One comparison of an input artifact's metadata with a literal: what TFX's compiler writes for
# `Cond(channel.future()[0].custom_property(NAME) == VALUE)` (compiler_utils.placeholder_to_cel).
_CONDITION = re.compile(
    r"^\(?inputs\.artifacts\['(?P<key>[^']+)'\]\.artifacts\[0\]\.metadata\['(?P<field>[^']+)'\]\s*"
    r"(?P<op>==|!=)\s*(?P<value>-?[0-9.]+|'[^']*'|\"[^\"]*\"|true|false)\)?$"
)


def _literal(text: str):
    if text in ("true", "false"):
        return text == "true"
    if text[0] in "'\"":
        return text[1:-1]
    return float(text)


def condition_holds(condition: str, artifacts: dict) -> bool:
    """A compiled trigger condition (comparisons joined by &&) on the task's input artifacts
    ({key: RuntimeArtifact}); anything else is refused by name rather than guessed at."""
    for part in condition.split("&&"):
        match = _CONDITION.match(part.strip())
        if not match:
            raise ValueError(
                f"run-local evaluates only metadata comparisons; this condition is not one: {part.strip()!r}"
            )
        metadata = artifacts[match["key"]].get("metadata", {})
        if match["field"] not in metadata:
            return False  # CEL: a missing field fails the condition
        value, wanted = metadata[match["field"]], _literal(match["value"])
        if isinstance(wanted, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        if (value == wanted) != (match["op"] == "=="):
            return False
    return True


class TaskFailed(RuntimeError):
    """A task's container exited non-zero; the message names the task and its log."""


@dataclass
class Task:
    name: str
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)  # output key -> RuntimeArtifact (JSON dict), as registered
    log_file: str = ""
    cached_from: str = ""  # the run whose execution KFP's cache gave this task's outputs


def task_order(tasks: dict) -> list[str]:
    """The tasks of one DAG in dependency order (ties by name, so a run is repeatable)."""
    done, order = set(), []
    while len(order) < len(tasks):
        ready = sorted(n for n, t in tasks.items() if n not in done and set(t.get("dependentTasks", [])) <= done)
        if not ready:
            raise ValueError(f"the pipeline's tasks depend on each other in a circle: {sorted(set(tasks) - done)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


def in_checkout(value, repo_dir: str = _REPO_DIR):
    """A string path inside the image's copy of this repository, as a path in this checkout."""
    if isinstance(value, str) and (value == IMAGE_REPO_DIR or value.startswith(IMAGE_REPO_DIR + "/")):
        return repo_dir + value[len(IMAGE_REPO_DIR) :]
    return value


def _parameter_values(task: dict, spec: dict, in_image: bool) -> dict:
    """The task's parameters; the image's paths (/graft/...) as this checkout's unless the task
    runs in the image."""
    root_inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    values = {}
    for key, source in task.get("inputs", {}).get("parameters", {}).items():
        if "runtimeValue" in source:
            constant = source["runtimeValue"]["constant"]
            values[key] = constant if in_image else in_checkout(constant)
        elif "componentInputParameter" in source:
            values[key] = root_inputs[source["componentInputParameter"]].get("defaultValue")
        else:
            raise ValueError(f"parameter {key!r}: only constants and pipeline inputs are supported here ({source})")
    return values


class LocalBackend:
    """Runs one compiled pipeline: provisions, launches and records each task."""

    def __init__(
        self,
        spec: dict,
        pipeline_root: str,
        work_dir: str,
        target: str,
        say=print,
        platform=None,
        engine=DEFAULT_ENGINE,
    ):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS} (got {target!r})")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES} (got {engine!r})")
        self.spec, self.target, self.say, self.engine = spec, target, say, engine
        self.in_process = engine in ("fork", "process")  # a process of this checkout, not a container
        self.image_env = image_environment() if self.in_process else {}  # a container has the image's own
        self.platform = (platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
        self.run_id = f"run-local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.pipeline_root = pipeline_root.rstrip("/")
        self.task_dir = os.path.join(os.path.abspath(work_dir), self.run_id)
        # The fork servers' own output (import-time warnings) beside the task folders.
        self.forks = fork_server.ForkServers(log=os.path.join(self.task_dir, "fork-servers.log"))
        self.store = kfp_driver.LocalMetadataStore(
            os.path.join(os.path.abspath(work_dir), METADATA_FILE),
            f"{target}:{spec.get('pipelineInfo', {}).get('name', '')}",
        )
        self.tasks: dict[str, Task] = {}
        self.skipped: dict[str, str] = {}  # task -> why it did not run
        self.cache: dict[str, dict] = {}  # task -> {"reused_from": run id} or {"ran": why}

    # -- artifacts as each backend hands them over ------------------------------------------
    def _register(self, artifact: dict, output_key: str, task: str) -> dict:
        """Records an output artifact as the backend's metadata store would; returns it. On
        `kfp` its metadata is what comes back out of ML Metadata (kubeflow/kfp_driver.py)."""
        metadata = dict(artifact.get("metadata", {}))
        if self.target == "kfp":
            try:
                custom = kfp_driver.record(metadata, output_key, f"task {task}, output {output_key}")
            except kfp_driver.MetadataError as error:
                raise TaskFailed(f"KFP's launcher fails task {task} after its command: {error}") from error
            metadata = kfp_driver.runtime_metadata(custom)
        return {
            "id": self.store.new_id(),
            "uri": artifact["uri"],
            "metadata": metadata,
            "type": artifact.get("type", {}),
        }

    def _as_input(self, recorded: dict, task_output: bool = True) -> dict:
        if self.target == "kfp":  # metadata.toRuntimeArtifact: the id as name, an empty schema
            handed = {"name": str(recorded["id"]), "uri": recorded["uri"], "metadata": recorded["metadata"]}
            if task_output:  # a sub-DAG's input artifact comes without any type (driver 2.0.3+)
                handed["type"] = {"instanceSchema": ""}
            return handed
        return {
            "name": f"projects/local/locations/local/metadataStores/default/artifacts/{recorded['id']}",
            "uri": recorded["uri"],
            "metadata": recorded["metadata"],
            "type": recorded["type"],
        }

    def _provision_outputs(self, name: str, component: dict) -> dict:
        """driver.provisionOutputs: a typed artifact per declared output, under the task root."""
        outputs = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[key] = {
                "artifacts": [
                    {
                        "name": key if self.target == "kfp" else f"{self.run_id}-{name}-{key}",
                        "uri": f"{self.pipeline_root}/{self.run_id}/{name}/{key}",
                        "type": definition["artifactType"],
                        "metadata": {},
                    }
                ]
            }
        return outputs

    def _recorded_input(self, source: dict, dag_inputs: dict) -> dict:
        """The registered artifact an input refers to: a sibling task's output, or an input of the
        sub-DAG the task is in (`componentInputArtifact`). KeyError when its producer did not run,
        which is what KFP's driver, resolving inputs first, fails on."""
        if "componentInputArtifact" in source:
            return dag_inputs[source["componentInputArtifact"]]
        producer = source["taskOutputArtifact"]
        if producer["producerTask"] in self.skipped:
            raise TaskFailed(
                f"an input of a task comes from {producer['producerTask']}, which did not run: KFP's driver "
                "resolves a task's inputs before its condition, so the run would fail here"
            )
        return self.tasks[producer["producerTask"]].outputs[producer["outputArtifactKey"]]

    def _input_artifacts(self, task: dict, dag_inputs: dict) -> dict:
        """{key: RuntimeArtifact} of the task's inputs, as handed over."""
        return {
            key: self._as_input(self._recorded_input(source, dag_inputs), "taskOutputArtifact" in source)
            for key, source in task.get("inputs", {}).get("artifacts", {}).items()
        }

    def why_skipped(self, task: dict, dag_inputs: dict) -> str | None:
        """Why the driver would not run `task` (its condition is false on its inputs, resolved
        first as the driver does), or None when it runs."""
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition and not condition_holds(condition, self._input_artifacts(task, dag_inputs)):
            return f"its condition is false: {condition}"
        return None

    def executor_input(self, name: str, task: dict, dag_inputs: dict) -> dict:
        component = self.spec["components"][task["componentRef"]["name"]]
        artifacts = {
            key: {"artifacts": [artifact]} for key, artifact in self._input_artifacts(task, dag_inputs).items()
        }
        return {
            "inputs": {
                "parameterValues": _parameter_values(task, self.spec, self.engine == "docker"),
                "artifacts": artifacts,
            },
            "outputs": {
                "artifacts": self._provision_outputs(name, component),
                "outputFile": os.path.join(
                    _POD_OUTPUTS if self.engine == "docker" else self._outputs(name), _OUTPUT_METADATA
                ),
            },
        }

    def _outputs(self, name: str) -> str:
        """This machine's folder for the task's output metadata (a container's /tmp/kfp_outputs)."""
        return os.path.join(self.task_dir, name, "kfp_outputs")

    def _output_metadata(self, name: str) -> dict:
        return _read_json(os.path.join(self._outputs(name), _OUTPUT_METADATA))

    # -- launching -----------------------------------------------------------------------------
    def _command(self, container: dict, executor_input: dict) -> list[str]:
        """The container's command and arguments, the compiled Beam flags included, with `{{$}}`
        filled in; in a process, `python` is this interpreter."""
        command = list(container["command"])
        if self.in_process:
            command = [sys.executable if part == "python" else part for part in command]
        args = [
            arg.replace(_PLACEHOLDER, json.dumps(executor_input)) if _PLACEHOLDER in arg else arg
            for arg in container.get("args", [])
        ]
        return command + args

    def _in_container(self, name: str, image: str, command: list[str], env: dict) -> list[str]:
        """`docker run` of the task as a pod of the image would run it: the command replacing the
        entrypoint, the compiled env and secrets, the host's network (the object store on its
        loopback), nothing of this machine mounted but the output-metadata folder."""
        os.makedirs(self._outputs(name), exist_ok=True)
        run = ["docker", "run", "--rm", "--network", "host", "-v", f"{self._outputs(name)}:{_POD_OUTPUTS}"]
        for key in env:  # by name: the values (credentials among them) reach docker in its env, not in `ps`
            run += ["-e", key]
        return run + ["--entrypoint", command[0], image] + command[1:]

    def _task_env(self, label: str, container_env) -> dict:
        """What a pod of the image gets: the image's ENV, the compiled env, the platform
        section's secrets; in a process also what a pod gets from its node and runtime (PATH,
        HOME, proxies, CA bundles, cloud credentials, the GPUs: _FROM_THE_NODE)."""
        env = {}
        if self.in_process:
            env = {name: os.environ[name] for name in _FROM_THE_NODE if name in os.environ}
            env.update(self.image_env)
            env["PYTHONPATH"] = _REPO_DIR  # the image's /graft, here this checkout
        for secret in self.platform.get("executors", {}).get(label, {}).get("secretAsEnv", []):
            for item in secret.get("keyToEnv", []):
                if item["envVar"] in os.environ:  # the secret's key, from this shell's variable of that name
                    env[item["envVar"]] = os.environ[item["envVar"]]
                else:
                    self.say(
                        f"    secret {secret['secretName']} key {item['secretKey']}: no {item['envVar']} in this "
                        "shell to stand for it; the task gets none"
                    )
        env.update({item["name"]: item["value"] for item in container_env})
        return env

    def _launch(self, name: str, step: str, container: dict, command: list[str], log_file: str, env: dict) -> None:
        if env.pop(EXPECTED_GPUS_ENV, None):
            # The pod's GPU check (components/trainer/devices.py) is the cluster's: here the
            # training step runs on what this machine has.
            self.say(f"    {name}: its GPU request is not enforced by run-local (on the cluster it fails without one)")
        if self.engine == "docker":
            command, env = self._in_container(name, container["image"], command, env), {**os.environ, **env}
        module = fork_server.module_of(command) if self.engine == "fork" else None
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(f"\n===== {step}: {' '.join(command[:3])} ...{' (forked)' if module else ''}\n")
            log.flush()
            if module:  # the same command, forked from a process that imported its module under this env
                returncode = self.forks.run(module, command[3:], log_file, _REPO_DIR, env)
            else:
                returncode = subprocess.run(
                    command, cwd=_REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
                ).returncode
        if returncode != 0:
            with open(log_file, encoding="utf-8", errors="replace") as log:
                tail = "".join(log.readlines()[-25:])
            raise TaskFailed(f"task {name} ({step}) exited with {returncode}; its log: {log_file}\n{tail}")

    def _download_inputs(self, name: str, executor_input: dict) -> None:
        """What the open-source launcher does before the command: each input artifact on an object
        store downloaded to a local path (kubeflow/launcher.py); its failure is the task's."""
        for key, artifacts in executor_input["inputs"]["artifacts"].items():
            uri = artifacts["artifacts"][0]["uri"] if artifacts["artifacts"] else ""
            if launcher.downloads(uri):
                try:
                    launcher.download(uri, os.path.join(self.task_dir, name, "launcher"))
                except launcher.DownloadFailed as error:
                    raise TaskFailed(
                        f"task {name}: KFP's launcher fails before its command, on input {key}: {error}"
                    ) from error

    def _cache_key(self, task_spec: dict, container: dict, executor_input: dict) -> dict:
        """KFP's cache key for this task (driver.getFingerPrint): parameters as resolved (the
        image's paths), inputs by name, outputs by type and metadata (after a driver hook),
        output parameters by type, the raw command (placeholders unfilled) and the image."""
        component = self.spec["components"][task_spec["componentRef"]["name"]]
        outputs = executor_input["outputs"]["artifacts"]
        return kfp_driver.cache_key(
            {key: [a["name"] for a in v["artifacts"]] for key, v in executor_input["inputs"]["artifacts"].items()},
            _parameter_values(task_spec, self.spec, in_image=True),
            {
                key: {"type": v["artifacts"][0]["type"], "metadata": v["artifacts"][0]["metadata"]}
                for key, v in outputs.items()
            },
            container.get("image", ""),
            container["command"] + container.get("args", []),
            {
                key: value.get("parameterType")
                for key, value in component.get("outputDefinitions", {}).get("parameters", {}).items()
            },
        )

    def run_task(self, name: str, task_spec: dict, dag_inputs: dict) -> Task:
        label = self.spec["components"][task_spec["componentRef"]["name"]]["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][label]["container"]
        os.makedirs(self._outputs(name), exist_ok=True)
        task = Task(name, log_file=os.path.join(self.task_dir, name, "log.txt"))
        started = time.time()
        executor_input = self.executor_input(name, task_spec, dag_inputs)
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook and self.target == "vertex":
            # Vertex runs the driver hook first, then updates the task's parameters and output
            # artifacts from the ExecutorOutput it wrote (TFX's run_executor reads the same file).
            env = self._task_env(label, hook.get("env", ()))
            hook_container = {**hook, "image": container["image"]}  # the hook runs in the executor's image
            self._launch(name, "driver hook", hook_container, self._command(hook, executor_input), task.log_file, env)
            hooked = self._output_metadata(name)
            for key, artifacts in hooked.get("artifacts", {}).items():
                provisioned = executor_input["outputs"]["artifacts"][key]["artifacts"][0]
                provisioned["metadata"].update(artifacts["artifacts"][0].get("metadata", {}))
        key = self._cache_key(task_spec, container, executor_input)
        caching = task_spec.get("cachingOptions", {}).get("enableCache", False)
        cached = self.store.cached(kfp_driver.fingerprint(key)) if caching else None
        if cached:  # driver.reuseCachedOutputs: the command does not run
            task.outputs, task.cached_from = cached["outputs"], cached["run_id"]
            self.cache[name] = {"reused_from": cached["run_id"]}
            self.tasks[name] = task
            return task
        last = self.store.last_execution(name) or {}
        if caching:
            decision = {"ran": kfp_driver.what_changed(last.get("key"), key)}
        else:  # and whether the cluster, were it on, would have replayed the last execution
            decision = {"ran": "caching is off for this task", "same_key_as": None}
            if last.get("key") == key:
                decision["same_key_as"] = last["run_id"]
        if self.target == "kfp":
            self._download_inputs(name, executor_input)
        env = self._task_env(label, container.get("env", ()))
        self._launch(name, "executor", container, self._command(container, executor_input), task.log_file, env)
        produced = self._output_metadata(name).get("artifacts", {})
        for output_key, artifacts in executor_input["outputs"]["artifacts"].items():
            artifact = artifacts["artifacts"][0]
            if produced.get(output_key, {}).get("artifacts"):  # launcher_v2.mergeRuntimeArtifacts
                update = produced[output_key]["artifacts"][0]
                artifact["uri"] = update.get("uri") or artifact["uri"]
                artifact["metadata"].update(update.get("metadata", {}))
            task.outputs[output_key] = self._register(artifact, output_key, name)
        task.seconds = round(time.time() - started, 1)
        self.store.completed(name, self.run_id, key, task.outputs, cache=caching)
        self.cache[name] = decision
        self.tasks[name] = task
        return task

    def run(self) -> dict:
        """Runs every task; returns {task: Task}. kfp_driver.WorkFolderBusy when another run-local
        holds the work folder."""
        with self.store.opened():
            try:
                self._run_dag(self.spec["root"]["dag"]["tasks"], {})
            finally:
                self.forks.close()
        return self.tasks

    def _run_dag(self, tasks: dict, dag_inputs: dict, prefix: str = "") -> None:
        order = task_order(tasks)
        for index, name in enumerate(order, 1):
            task = tasks[name]
            component = self.spec["components"][task["componentRef"]["name"]]
            label = f"{prefix}[{index}/{len(order)}] {name}"
            skipped = self.why_skipped(task, dag_inputs)
            if skipped:
                self._skip(name, component, skipped)
                self.say(f"{label} skipped: {skipped}")
                continue
            if "dag" in component:  # a sub-DAG: its tasks run with its inputs
                self.say(f"{label}: its condition holds, running its tasks")
                inputs = {
                    key: self._recorded_input(source, dag_inputs)
                    for key, source in task.get("inputs", {}).get("artifacts", {}).items()
                }
                self._run_dag(component["dag"]["tasks"], inputs, prefix + "  ")
                continue
            self.say(f"{label} ...")
            done = self.run_task(name, task, dag_inputs)
            if done.cached_from:
                self.say(f"{label} reused from KFP's cache: the outputs of {done.cached_from}")
            else:
                self.say(f"{label} done in {done.seconds:.1f}s")

    def _skip(self, name: str, component: dict, why: str) -> None:
        """Records a task (and, for a sub-DAG, every task in it) as not run."""
        self.skipped[name] = why
        for inner in component.get("dag", {}).get("tasks", {}):
            inner_component = self.spec["components"][component["dag"]["tasks"][inner]["componentRef"]["name"]]
            self._skip(inner, inner_component, f"{name} did not run ({why})")


def _read_json(path: str) -> dict:
    """A JSON file on this machine or on the object store the artifacts are on; {} when absent."""
    return json.loads(files.read(path).decode("utf-8")) if files.exists(path) else {}


def image_environment(dockerfile: str = _DOCKERFILE) -> dict:
    """The ENV the image's Dockerfile sets, its ${ARG}s at their defaults."""
    with open(dockerfile, encoding="utf-8") as f:
        lines = f.read().replace("\\\n", " ").splitlines()
    args, env = {}, {}
    for line in (line.strip() for line in lines):
        if line.startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            args[name] = default
        elif line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, _, value = item.partition("=")
                env[name] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""), value)
    return env


def run_compiled(spec_path: str, pipeline_root: str, work_dir: str, target: str, say=print, engine=DEFAULT_ENGINE):
    """Executes the compiled pipeline at `spec_path`; returns the backend (tasks, run id, dirs)."""
    spec, platform = load_compiled(spec_path)
    backend = LocalBackend(spec, pipeline_root, work_dir, target, say, platform, engine)
    backend.run()
    return backend


def summarize(backend: LocalBackend, num_classes: int) -> dict:
    """The facts of a finished run, from its artifacts: blessed, pushed where, metrics, why not."""
    tasks = backend.tasks

    def output(task: str, key: str) -> dict:
        return tasks[task].outputs.get(key, {}) if task in tasks else {}

    decision = output("RetrainGate", "decision").get("metadata", {})
    retrain = bool(decision.get("retrain")) if decision else None
    blessing, pushed = output("Evaluator", "blessing"), output("Pusher", "pushed_model")
    baseline = output("ServingBaseline", "baseline_model")
    evaluated = output("Evaluator", "evaluation")
    evaluation = read_evaluation(evaluated["uri"], num_classes) if evaluated else {}
    examples = (
        output("ImageExampleGen", "examples")
        or output("TextExampleGen", "examples")
        or output("ImportExampleGen", "examples")
    )
    report = os.path.join(examples.get("uri", ""), INGEST_DIR, INGEST_REPORT_FILE)
    return {
        "target": backend.target,
        "run_id": backend.run_id,
        "task_seconds": {name: task.seconds for name, task in tasks.items() if not task.cached_from},
        "cache": dict(backend.cache),  # per task: reused_from (a run) or why it ran
        "skipped_tasks": dict(backend.skipped),
        "retrain": {"retrain": retrain, "reason": decision.get("reason")} if decision else None,
        "run_skipped_reason": decision.get("reason") if retrain is False else None,
        "drift": json.loads(decision["drift"]) if decision.get("drift") else None,  # the gate's drift checks
        "task_logs": {name: task.log_file for name, task in tasks.items() if not task.cached_from},
        # A push needs the golden set's blessing too, when there is one (as pipeline/summary.py says).
        "blessed": bool(blessing.get("metadata", {}).get("blessed"))
        and (
            not output("GoldenEvaluator", "blessing")
            or bool(output("GoldenEvaluator", "blessing").get("metadata", {}).get("blessed"))
        ),
        "baseline_serving_version": baseline.get("metadata", {}).get(SERVING_VERSION_PROPERTY) or None,
        "pushed": bool(pushed.get("metadata", {}).get("pushed")),
        "pushed_model_dir": pushed.get("metadata", {}).get("pushed_destination") or None,
        "push_skipped_reason": pushed.get("metadata", {}).get("skipped_reason"),
        "metrics": evaluation.get("overall", {}),
        "metric_intervals": evaluation.get("intervals", {}),
        "promotion": evaluation.get("promotion"),
        "not_blessed_because": evaluation.get("failures", []),
        "ingest": _read_json(report) or None,
        "golden": golden_summary(
            output("GoldenEvaluator", "evaluation"), output("GoldenEvaluator", "blessing"), num_classes
        ),
    }


def golden_summary(evaluated: dict, blessing: dict, num_classes: int) -> dict | None:
    """The golden set's evaluation (eval_data), when the pipeline has one."""
    if not evaluated:
        return None
    return judgement(evaluated["uri"], num_classes, bool(blessing.get("metadata", {}).get("blessed")))
