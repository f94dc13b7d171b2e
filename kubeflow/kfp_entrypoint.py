"""The executors' command on Kubeflow: TFX's KFP v2 entrypoint, after kfp_v2_compat's patches.

Compiled into every executor's container command (KubeflowV2DagRunnerConfig.default_commands),
so the patches apply exactly where TFX parses what the KFP driver hands over.
"""

import json

from absl import app, logging
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from components import files
from kubeflow import kfp_v2_compat, object_store


def output_uris(invocation: str) -> list[str]:
    """The URIs of the task's output artifacts, from its ExecutorInput JSON."""
    outputs = json.loads(invocation or "{}").get("outputs", {}).get("artifacts", {})
    return [a["uri"] for artifacts in outputs.values() for a in artifacts.get("artifacts", []) if a.get("uri")]


def remove_markers(invocation: str) -> None:
    """Deletes the `dir/` marker objects TensorFlow's GCS client left under the task's outputs:
    KFP's launcher turns them into files when a later task downloads the artifact, and fails
    (kubeflow/object_store.remove_directory_markers)."""
    for uri in output_uris(invocation):
        if uri.startswith(object_store.SCHEMES):
            removed = object_store.remove_directory_markers(uri)
            if removed:
                logging.info("Removed %d directory marker objects under %s", len(removed), uri)


def _main(parsed) -> None:
    """TFX's executor, with s3:// readable first when the task's artifacts are there, and its
    outputs left without directory markers. `parsed`: (flags, Beam arguments), as TFX's parser
    returns them."""
    invocation = parsed[0].json_serialized_invocation_args or ""
    if "s3://" in invocation:
        files.register("s3://")
    kubeflow_v2_run_executor.main(parsed)
    remove_markers(invocation)
    files.exit_process(0)  # see files.exit_process: a task that used S3 would otherwise exit 134


def run() -> None:
    kfp_v2_compat.install()  # patches the entrypoint's module functions before it parses anything
    app.run(main=_main, flags_parser=kubeflow_v2_run_executor._parse_flags)


if __name__ == "__main__":
    run()
