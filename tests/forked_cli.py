"""Pipeline runs for the tests: local_runner's main in a process of its own, forked from one that
imported TensorFlow, TFX, TFMA, TFDV, TFT and Beam once per test worker.

Each run still has its own process (nothing one run does reaches the next, its exit status and
output are its own), without the ~7 s a fresh interpreter spends importing the stack before the
first component: measured on the same run, 49.8 s as `python local_runner.py`, 42.0 s forked.
The server never runs a TensorFlow op, so each child starts TensorFlow's runtime itself.

A fresh interpreter stays where that is the point: a config whose runtime environment must be
set before TensorFlow loads (hub_bert's oneDNN switch: conftest.run_graft runs those as
`python local_runner.py`, a whole run through the interpreter's exit), `graft_cli`'s checks, the
run killed mid-training in test_pipeline_e2e and every task of `graft kfp run-local`.

    python -m tests.forked_cli      (reads one JSON request a line, answers {"rc": N} a line)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_RUNNER = os.path.join(REPO, "local_runner.py")


def _preload() -> None:
    """What a run imports before and while TFX launches its components (none runs an op)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow_data_validation  # noqa: F401
    import tensorflow_hub  # noqa: F401
    import tensorflow_model_analysis  # noqa: F401
    import tensorflow_text  # noqa: F401
    import tensorflow_transform  # noqa: F401
    import tf_keras  # noqa: F401
    from tfx.orchestration.local import local_dag_runner  # noqa: F401

    import local_runner  # noqa: F401
    import pipeline.local_dag  # noqa: F401
    import pipeline.pipeline  # noqa: F401


def _child(request: dict) -> None:
    """In the forked process: the request's output file as stdout and stderr, its environment
    and folder, then local_runner as `python local_runner.py ARGS` runs it. Never returns."""
    code = 1
    try:
        os.setsid()  # its own process group: a timeout ends its Beam workers and checks with it
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [LOCAL_RUNNER, *request["args"]]
        import local_runner

        try:
            code = local_runner.main(request["args"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # an uncaught error: a traceback and status 1, as the interpreter gives
        traceback.print_exc()
        code = 1
    finally:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not the server's clean-up: the child's process ends here


def _run(request: dict) -> int:
    """Forks a child for `request`; its exit status, or -9 once it ran past request["timeout"]."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            _child(request)
        finally:
            os._exit(1)  # never back into the server's loop, whatever _child raised
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.05)


def serve() -> None:
    _preload()
    for line in sys.stdin:
        sys.stdout.write(json.dumps({"rc": _run(json.loads(line))}) + "\n")
        sys.stdout.flush()


_server: subprocess.Popen | None = None
_lock = threading.Lock()


def run(args: list, output: str, env: dict, timeout: float = 900) -> int:
    """`python local_runner.py ARGS` in a forked child, stdout and stderr into `output`, with
    environment `env`, from the repository's root; returns its exit status (-9: killed at `timeout`)."""
    global _server
    with _lock:
        if _server is None or _server.poll() is not None:
            _server = subprocess.Popen(
                [sys.executable, "-m", "tests.forked_cli"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
        request = {"args": [str(a) for a in args], "output": output, "env": env, "cwd": REPO, "timeout": timeout}
        try:
            _server.stdin.write(json.dumps(request) + "\n")
            _server.stdin.flush()
            reply = _server.stdout.readline()
            if not reply:
                raise RuntimeError(f"the forking server of tests/forked_cli.py ended (status {_server.wait()})")
            return json.loads(reply)["rc"]
        except BaseException:  # interrupted mid-request: its reply would answer the next one
            _server.kill()
            _server = None
            raise


if __name__ == "__main__":
    serve()
