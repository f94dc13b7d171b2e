"""The executors' command on Kubeflow: TFX's KFP v2 entrypoint, after kfp_v2_compat's patches.

Compiled into every executor's container command (KubeflowV2DagRunnerConfig.default_commands),
so the patches apply exactly where TFX parses what the KFP driver hands over.
"""

from absl import app
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from components import files
from kubeflow import kfp_v2_compat


def _main(args) -> None:
    """TFX's executor, with s3:// readable first when the task's artifacts are there."""
    if "s3://" in (args.json_serialized_invocation_args or ""):
        files.register("s3://")
    kubeflow_v2_run_executor.main(args)
    files.exit_process(0)  # see files.exit_process: a task that used S3 would otherwise exit 134


def run() -> None:
    kfp_v2_compat.install()  # patches the entrypoint's module functions before it parses anything
    app.run(main=_main, flags_parser=kubeflow_v2_run_executor._parse_flags)


if __name__ == "__main__":
    run()
