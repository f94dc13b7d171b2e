"""Makes TFX 1.16's container entrypoint work under the open-source KFP v2 driver/launcher.

TFX's KFP v2 support was written against Vertex AI Pipelines. On the open-source backend the
driver hands executors artifacts that TFX's entrypoint does not expect. kubeflow/kfp_entrypoint.py
(the executors' compiled command) calls `install()` before TFX parses anything. Each patch says
which incompatibility it answers; all five known ones apply to TFX 1.16 (its entrypoint code is
the same as 1.15's and 1.17's).
"""

from __future__ import annotations

import json
import os

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import compiler_utils
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as run_executor
from tfx.utils import path_utils

_INSTALLED = False
# Which TFX artifact class an untyped artifact is, from metadata keys only that class writes.
# (Not split_names: Examples, ExampleStatistics, ExampleAnomalies and ExampleValidationMetrics
# all write it.)
_CLASS_BY_METADATA_KEY = (
    ("blessed", "tfx.types.standard_artifacts.ModelBlessing"),
    ("pushed", "tfx.types.standard_artifacts.PushedModel"),
    ("pushed_destination", "tfx.types.standard_artifacts.PushedModel"),
)
# The open-source driver's generic system.* titles, mapped to the TFX class they stand for.
_SYSTEM_TITLES = {
    "system.Model": "tfx.types.standard_artifacts.Model",
    "system.Dataset": "tfx.types.standard_artifacts.Examples",
    "system.Metrics": "tfx.types.standard_artifacts.ModelEvaluation",
    "system.Artifact": "tfx.types.artifact.Artifact",
}
_GENERIC = "tfx.types.artifact.Artifact"
_inputs_spec_types: dict = {}  # input key -> class path, from the component's inputs spec


def install() -> None:
    """Applies the patches once; safe to call repeatedly."""
    global _INSTALLED
    if _INSTALLED:
        return

    # 1. The open-source driver types artifacts with system.* schema titles (system.Model,
    #    system.Artifact, ...), which TFX's title-to-class map lacks: TFX then tries to import
    #    "system.Model" as a class path and fails.
    compiler_utils.TITLE_TO_CLASS_PATH.update(_SYSTEM_TITLES)

    # 2. The driver passes input artifacts without a type (KFP's metadata.toRuntimeArtifact sets
    #    none; older drivers sent an empty instance_schema). TFX then fails: an unbound `title`
    #    for no type, `None.get('title')` for an empty schema. Both are read as generic here.
    original_retrieve = entrypoint._retrieve_class_path

    def retrieve_class_path(type_schema):
        kind = type_schema.WhichOneof("kind")
        if kind is None or (kind == "instance_schema" and not (type_schema.instance_schema or "").strip()):
            return _GENERIC
        return original_retrieve(type_schema)

    entrypoint._retrieve_class_path = retrieve_class_path

    # 3. With only a generic type left (patches 1 and 2) and no declared type (patch 4), the
    #    class is inferred from metadata keys that only one TFX class writes; an artifact that
    #    still has no class is refused by name, rather than read as the wrong class.
    # 4. Input artifacts arrive without the types the compiled component declared; TFX's
    #    inputs spec (--json_serialized_inputs_spec_args) has them, so they are used first.
    original_parse = entrypoint._parse_raw_artifact

    def parse_raw_artifact(artifact_pb, name_from_id):
        path = retrieve_class_path(artifact_pb.type)
        if path == _GENERIC:
            inferred = infer_class_path(artifact_pb)
            if not inferred:
                raise ValueError(
                    f"artifact {artifact_pb.name or artifact_pb.uri!r} arrived without a type, and neither the "
                    "component's inputs spec nor its metadata says which TFX artifact it is"
                )
            artifact_pb = _with_title(artifact_pb, inferred)
        return original_parse(artifact_pb, name_from_id)

    entrypoint._parse_raw_artifact = parse_raw_artifact

    original_parse_dict = entrypoint.parse_raw_artifact_dict

    def parse_raw_artifact_dict(inputs_dict, name_from_id=None):
        for key, artifact_list in inputs_dict.items():
            declared = _inputs_spec_types.get(key)
            for artifact_pb in artifact_list.artifacts:
                if declared and retrieve_class_path(artifact_pb.type) == _GENERIC:
                    artifact_pb.type.CopyFrom(_type_for(declared))
        return original_parse_dict(inputs_dict, name_from_id)

    entrypoint.parse_raw_artifact_dict = parse_raw_artifact_dict

    original_run = run_executor._run_executor

    def run_with_input_types(args, beam_args):
        _inputs_spec_types.clear()
        _inputs_spec_types.update(input_types_from_spec(getattr(args, "json_serialized_inputs_spec_args", None)))
        return original_run(args, beam_args)

    run_executor._run_executor = run_with_input_types

    # 5. The open-source launcher uploads a Model artifact's directory as the artifact itself,
    #    so TFX's <uri>/Format-Serving sub-folder is not where readers look. On that backend
    #    (the image's GRAFT_TARGET=kfp) models live at the URI itself. Vertex AI keeps TFX's
    #    layout (an image built with GRAFT_TARGET=vertex).
    if os.environ.get("GRAFT_TARGET", "kfp") == "kfp":

        def serving_model_dir(output_uri, is_old_artifact=False):
            return output_uri

        path_utils.serving_model_dir = serving_model_dir
    _INSTALLED = True


def infer_class_path(artifact_pb) -> str | None:
    keys = set(json_format.MessageToDict(artifact_pb.metadata)) | set(artifact_pb.custom_properties)
    for key, class_path in _CLASS_BY_METADATA_KEY:
        if key in keys:
            return class_path
    return None


def _title_of(class_path: str) -> str:

    for title, path in compiler_utils.TITLE_TO_CLASS_PATH.items():
        if path == class_path and title.startswith("tfx."):
            return title
    return class_path


def _type_for(class_path: str):
    return pipeline_spec_pb2.ArtifactTypeSchema(instance_schema=f"title: {_title_of(class_path)}\ntype: object\n")


def _with_title(artifact_pb, class_path: str):
    copy = type(artifact_pb)()
    copy.CopyFrom(artifact_pb)
    copy.type.CopyFrom(_type_for(class_path))
    return copy


def input_types_from_spec(spec_json: str | None) -> dict:
    """{input key: class path} from TFX's serialized ComponentInputsSpec."""
    if not spec_json:
        return {}

    result = {}
    for key, value in json.loads(spec_json).get("artifacts", {}).items():
        schema = value.get("artifactType", {})
        title = schema.get("schemaTitle") or (yaml.safe_load(schema.get("instanceSchema") or "") or {}).get("title")
        if title:
            result[key] = compiler_utils.TITLE_TO_CLASS_PATH.get(title, title)
    return result
