"""Pipeline runs for the tests: `python local_runner.py ARGS` in a process of its own, forked from
one that imported TensorFlow, TFX, TFMA, TFDV, TFT and Beam once per test worker (the server of
kubeflow/fork_server.py, which `graft kfp run-local` forks its tasks from).

Each run still has its own process (nothing one run does reaches the next, its exit status and
output are its own), without the ~7 s a fresh interpreter spends importing the stack before the
first component: measured on the same run, 49.8 s as `python local_runner.py`, 42.0 s forked.
The server never runs a TensorFlow op, so each child starts TensorFlow's runtime itself.

A fresh interpreter stays where that is the point: a config whose runtime environment must be
set before TensorFlow loads (hub_bert's oneDNN switch: conftest.run_graft runs those as
`python local_runner.py`, a whole run through the interpreter's exit), `graft_cli`'s checks and
the tasks of `graft kfp run-local --engine process`.
"""

from __future__ import annotations

import os
import threading
import time

from kubeflow.fork_server import ForkServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_RUNNER = os.path.join(REPO, "local_runner.py")
# What a run imports before and while TFX launches its components (none runs an op).
PRELOAD = [
    "tensorflow_data_validation",
    "tensorflow_hub",
    "tensorflow_model_analysis",
    "tensorflow_text",
    "tensorflow_transform",
    "tf_keras",
    "tfx.orchestration.local.local_dag_runner",
    "pipeline.local_dag",
    "pipeline.pipeline",
]

_server: ForkServer | None = None
_lock = threading.Lock()


def run(args: list, output: str, env: dict, timeout: float = 900, kill_once_printed: str | None = None) -> int:
    """`python local_runner.py ARGS` in a forked child, stdout and stderr into `output`, with
    environment `env` (the server imported under this process's, Keras 2 set), from the
    repository's root; returns its exit status (-9: killed at `timeout`, or with SIGKILL to its
    whole process group, as a preempted node would, once its output holds `kill_once_printed`)."""
    global _server
    open(output, "w").close()  # the run's output alone, as a fresh process writing it would leave it
    with _lock:
        if _server is None or not _server.alive():
            _server = ForkServer("local_runner", {**os.environ, "TF_USE_LEGACY_KERAS": "1"}, REPO, PRELOAD)
        # Its own process group: a timeout ends its Beam workers and serving checks with it.
        pid = _server.start(args, output, REPO, env=env, timeout=timeout, new_session=True)
        try:
            if kill_once_printed:
                _kill_once_printed(pid, output, kill_once_printed)
            return _server.wait()
        except BaseException:  # the child's status unread: the server cannot answer another run
            _server.close()
            raise


def _kill_once_printed(pid: int, output: str, text: str) -> None:
    """Watches `output` as it grows; kills the child once it holds `text` (or returns when the
    child ended without printing it)."""
    seen = ""
    with open(output, encoding="utf-8", errors="replace") as f:
        while True:
            seen = seen[-len(text) :] + f.read()
            if text in seen:
                _server.kill_child()
                return
            try:
                os.kill(pid, 0)  # ended (and reaped by the server) without printing it
            except ProcessLookupError:
                return
            time.sleep(0.02)
