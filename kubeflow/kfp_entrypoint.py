"""The executors' command on Kubeflow: TFX's KFP v2 entrypoint, after kfp_v2_compat's patches.

Compiled into every executor's container command (KubeflowV2DagRunnerConfig.default_commands),
so the patches apply exactly where TFX parses what the KFP driver hands over.
"""

from absl import app
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from kubeflow import kfp_v2_compat


def run() -> None:
    kfp_v2_compat.install()  # patches the entrypoint's module functions before it parses anything
    app.run(main=kubeflow_v2_run_executor.main, flags_parser=kubeflow_v2_run_executor._parse_flags)


if __name__ == "__main__":
    run()
