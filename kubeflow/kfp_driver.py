"""What open-source KFP's driver and launcher do to artifacts between tasks, for `graft kfp run-local`.

Read from kubeflow/pipelines backend/src/v2 at 2.0.0-2.3.0 (converter.go and cacheutils/cache.go
are the same in all of them):

- the launcher records each output artifact in ML Metadata, its metadata fields as custom
  properties (metadata/converter.go `StructValueToMLMDValue`): a bool becomes an int 1/0, every
  number a double, a list `{"list": [...]}` and a struct `{"struct": {...}}`; a null fails the
  task after its command succeeded ("unknown/unsupported value type"). `display_name` (the output
  key) is added;
- the driver hands a downstream task that artifact back (`toRuntimeArtifact`): named by its
  numeric id, typed `instanceSchema: ""` (a sub-DAG's input: no type at all), its metadata the
  custom properties converted back (ints and doubles as numbers; nothing unwrapped);
- the cache key (`GenerateCacheKey`) is the input artifacts' names (ids), the parameter values,
  the output artifacts' type and metadata, the raw command and arguments and the image; a task
  whose `cachingOptions.enableCache` is on and whose key an earlier completed execution had is
  not run: its outputs are that execution's artifacts, ids and all, so the tasks after it can
  hit the cache too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from contextlib import contextmanager


class MetadataError(ValueError):
    """An output's metadata that ML Metadata cannot hold (the launcher fails the task on it)."""


def to_mlmd(value, where: str) -> dict:
    """One metadata field as the launcher stores it (StructValueToMLMDValue)."""
    if isinstance(value, bool):
        return {"int_value": int(value)}
    if isinstance(value, (int, float)):
        return {"double_value": float(value)}
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, list):
        return {"struct_value": {"list": value}}
    if isinstance(value, dict):
        return {"struct_value": {"struct": value}}
    raise MetadataError(f"{where} is {value!r}: the launcher cannot store it in ML Metadata (unsupported value type)")


def from_mlmd(value: dict):
    """One custom property as the driver hands it back (toRuntimeArtifact)."""
    if "int_value" in value:
        return float(value["int_value"])
    if "double_value" in value:
        return value["double_value"]
    if "string_value" in value:
        return value["string_value"]
    return value["struct_value"]


def record(metadata: dict, output_key: str, where: str) -> dict:
    """The custom properties the launcher records for an output artifact's metadata."""
    custom = {key: to_mlmd(value, f"{where}: metadata field {key!r}") for key, value in metadata.items()}
    custom.setdefault("display_name", {"string_value": output_key})
    return custom


def runtime_metadata(custom_properties: dict) -> dict:
    return {key: from_mlmd(value) for key, value in custom_properties.items()}


def cache_key(
    input_names: dict, parameters: dict, outputs: dict, image: str, command_and_args: list, output_parameters=None
) -> dict:
    """GenerateCacheKey's fields: {input key: [artifact names]}, {parameter: value},
    {output key: {type, metadata}} (URI and name wiped), {output parameter: type}, the image and
    the raw command + args. A copy: the provisioned outputs change once the task ran."""
    return copy.deepcopy(
        {
            "inputArtifactNames": {key: list(names) for key, names in sorted(input_names.items())},
            "inputParameterValues": dict(sorted(parameters.items())),
            "outputArtifactsSpec": dict(sorted(outputs.items())),
            "outputParametersSpec": dict(sorted((output_parameters or {}).items())),
            "containerSpec": {"image": image, "cmdArgs": list(command_and_args)},
        }
    )


def fingerprint(key: dict) -> str:
    """sha256 over the key, as the driver hashes its JSON (canonical JSON here: the same fields
    give the same fingerprint, though not KFP's exact bytes)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def what_changed(before: dict | None, now: dict) -> str:
    """Why a key misses the cache, next to the key of the task's previous execution."""
    if before is None:
        return "no earlier execution of this task"
    changed = []
    for key, names in now["inputArtifactNames"].items():
        if before["inputArtifactNames"].get(key) != names:
            changed.append(f"input {key} is a new artifact ({', '.join(names)})")
    for name, value in now["inputParameterValues"].items():
        if before["inputParameterValues"].get(name) != value:
            changed.append(f"parameter {name} changed")
    if before["containerSpec"] != now["containerSpec"]:
        changed.append("the image or command changed")
    if before["outputArtifactsSpec"] != now["outputArtifactsSpec"]:
        changed.append("its outputs' types changed")
    return "; ".join(changed) or "no cache entry has this key (its last execution ran with caching off)"


class WorkFolderBusy(RuntimeError):
    """Another run-local holds the work folder (its metadata ids and cache would collide)."""


class LocalMetadataStore:
    """What run-local keeps between runs in its work folder, as ML Metadata and KFP's cache table
    keep it on a cluster: artifact ids (so a new artifact has a new name in cache keys) and, per
    fingerprint, the completed execution's output artifacts. Cache entries are scoped as KFP
    scopes them (per pipeline; here also per target, whose backends do not share a cache). One
    run at a time holds the folder (`opened`)."""

    def __init__(self, path: str, scope: str):
        self.path, self.scope = path, scope
        self.state = {"next_id": 1, "scopes": {}}
        self._lock = None

    @contextmanager
    def opened(self):
        """Holds the folder for a run: reads the store, refuses a second run-local beside it."""
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._lock = open(self.path + ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise WorkFolderBusy(
                f"another graft kfp run-local is running with the work folder {os.path.dirname(self.path)}: "
                "wait for it, or give this one its own --work-dir"
            ) from None
        try:
            if os.path.exists(self.path):
                with open(self.path, encoding="utf-8") as f:
                    self.state.update(json.load(f))
            yield self
        finally:
            self._lock.close()  # releases the lock

    @property
    def _scoped(self) -> dict:
        return self.state["scopes"].setdefault(self.scope, {"executions": {}, "last": {}})

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"] - 1

    def cached(self, fingerprint_: str) -> dict | None:
        return self._scoped["executions"].get(fingerprint_)

    def last_execution(self, task: str) -> dict | None:
        """{"run_id", "key"} of the task's latest completed execution."""
        return self._scoped["last"].get(task)

    def completed(self, task: str, run_id: str, key: dict, outputs: dict, cache: bool) -> None:
        """Records a completed execution and saves; with caching on, as a cache entry (the
        launcher's CreateExecutionCache: the driver computes no fingerprint otherwise)."""
        if cache:
            self._scoped["executions"][fingerprint(key)] = {"task": task, "run_id": run_id, "outputs": outputs}
        self._scoped["last"][task] = {"run_id": run_id, "key": key}
        self.save()

    def save(self) -> None:
        staging = self.path + ".partial"
        with open(staging, "w", encoding="utf-8") as f:
            json.dump(self.state, f, indent=1)
        os.replace(staging, self.path)
