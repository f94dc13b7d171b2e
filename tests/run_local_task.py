"""The task of tests/test_run_local.py's two-task spec, run as `python -m tests.run_local_task
EXECUTOR_INPUT`: writes the ExecutorInput and the environment it got under its first output's
URI, and the output metadata named by PRODUCE (JSON) into its output file."""

import json
import os
import sys

if __name__ == "__main__":
    executor_input = json.loads(sys.argv[1])
    [key] = executor_input["outputs"]["artifacts"]
    uri = executor_input["outputs"]["artifacts"][key]["artifacts"][0]["uri"]
    os.makedirs(uri, exist_ok=True)
    with open(os.path.join(uri, "received.json"), "w") as f:
        json.dump({"input": executor_input["inputs"], "env": dict(os.environ)}, f)
    os.makedirs(os.path.dirname(executor_input["outputs"]["outputFile"]), exist_ok=True)
    with open(executor_input["outputs"]["outputFile"], "w") as f:
        json.dump({"artifacts": {key: {"artifacts": [{"metadata": json.loads(os.environ["PRODUCE"])}]}}}, f)
