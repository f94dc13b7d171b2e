"""kubeflow/fork_server.py, which `graft kfp run-local` starts its tasks from: a forked task is a
process of its own with its own arguments, folder, environment, output and exit status, and
holds nothing a fresh `python -m MODULE` would not (the server imports the module and the
standard library, nothing else). The whole pipeline through it: test_kubeflow.py's run-local test."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kubeflow import fork_server, run_local
from tests.test_run_local import _PLATFORM, _received, _spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = "tests.fork_probe"


def _env(**extra) -> dict:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": REPO, **extra}


def _lines(path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def test_a_forked_task_is_its_own_process_with_what_a_fresh_interpreter_would_hold(tmp_path):
    output = str(tmp_path / "log.txt")
    servers = fork_server.ForkServers()
    try:
        env = _env(PROBE_EXIT="3", TASK_SETTING="a")
        assert servers.run(PROBE, ["--flag", "x y"], output, cwd=str(tmp_path), env=env) == 3
        assert servers.run(PROBE, ["second"], output, cwd=REPO, env=env) == 3  # the same server, another child
        [server] = servers.servers.values()
        server_pid = server.process.pid
    finally:
        servers.close()
    assert server.process.poll() is not None  # closed with the run
    first, second = _lines(output)  # appended, one line per task
    assert first["argv"][1:] == ["--flag", "x y"] and first["argv"][0].endswith("fork_probe.py")  # as -m sets it
    assert second["argv"][1:] == ["second"]
    assert first["cwd"] == first["path0"] == str(tmp_path) and second["cwd"] == second["path0"] == REPO
    assert first["env"] == env  # the task's environment, nothing of the server's shell
    assert len({first["pid"], second["pid"], server_pid}) == 3

    fresh = subprocess.run(
        [sys.executable, "-m", PROBE], capture_output=True, text=True, cwd=REPO, env=_env(), check=True
    )
    fresh_modules = set(json.loads(fresh.stdout.splitlines()[-1])["modules"])
    extra = set(first["modules"]) - fresh_modules
    # Every module of a fresh interpreter, and beyond them only the standard library and the
    # server's package: a task cannot lean on anything its own command does not import.
    assert fresh_modules <= set(first["modules"])
    assert {m for m in extra if m.split(".")[0] not in sys.stdlib_module_names} == {"kubeflow"}
    # The module itself ran once per task, as __main__ (the server ran only its import lines).
    assert open(output).read().count("top level ran as") == 2 == open(output).read().count("top level ran as __main__")


def test_another_environment_gets_its_own_server_and_failures_keep_their_status(tmp_path):
    output = str(tmp_path / "log.txt")
    servers = fork_server.ForkServers()
    try:
        assert servers.run(PROBE, [], output, cwd=REPO, env=_env(TASK_SETTING="a")) == 0
        assert servers.run(PROBE, [], output, cwd=REPO, env=_env(TASK_SETTING="b")) == 0
        assert servers.run(PROBE, [], output, cwd=REPO, env=_env(PROBE_RAISE="broken task")) == 1
        assert len(servers.servers) == 3  # a server per environment: each imported its module under its own
    finally:
        servers.close()
    assert [line["env"]["TASK_SETTING"] for line in _lines(output)] == ["a", "b"]
    log = open(output).read()
    assert "Traceback" in log and "RuntimeError: broken task" in log  # as the interpreter reports it


def test_a_module_that_fails_to_import_fails_its_task_not_the_server(tmp_path):
    (tmp_path / "broken.py").write_text("import json\nimport no_such_module_here\n")
    servers = fork_server.ForkServers(log=str(tmp_path / "servers.log"))
    env = {**_env(), "PYTHONPATH": str(tmp_path)}
    try:
        assert servers.run("broken", [], str(tmp_path / "task.txt"), cwd=str(tmp_path), env=env) == 1
        assert servers.run("broken", [], str(tmp_path / "task.txt"), cwd=str(tmp_path), env=env) == 1
        [server] = servers.servers.values()
        assert server.alive()  # one server for both tasks, though its import failed
    finally:
        servers.close()
    # Each task's log says why, as a fresh interpreter's would; the server said it once in its own.
    assert open(tmp_path / "task.txt").read().count("No module named 'no_such_module_here'") == 2
    assert "No module named 'no_such_module_here'" in open(tmp_path / "servers.log").read()


def test_a_forked_task_past_its_timeout_or_killed_by_its_caller_ends_and_the_server_goes_on(tmp_path):
    (tmp_path / "sleeper.py").write_text(
        "import time\nif __name__ == '__main__':\n    print('asleep', flush=True)\n    time.sleep(60)\n"
    )
    server = fork_server.ForkServer("sleeper", {**_env(), "PYTHONPATH": str(tmp_path)}, str(tmp_path))
    try:
        assert server.run([], str(tmp_path / "out.txt"), str(tmp_path), timeout=1, new_session=True) == -9
        assert server.alive()
        # Or ended by the caller, from the pid `start` gives (its own process group).
        output = tmp_path / "started.txt"
        pid = server.start([], str(output), str(tmp_path), new_session=True)
        deadline = time.monotonic() + 60
        while "asleep" not in (output.read_text() if output.exists() else ""):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        assert os.getpgid(pid) == pid
        os.killpg(pid, signal.SIGKILL)
        assert server.wait() == -signal.SIGKILL
    finally:
        server.close()


@pytest.mark.parametrize("engine", ["fork", "process"])
def test_run_local_tasks_receive_their_inputs_and_environment_forked_or_fresh(tmp_path, engine, monkeypatch):
    """The two-task spec of test_run_local.py: each engine hands its tasks the same inputs and
    the same environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "the-secret")
    spec = _spec(3, {"rows": 3})
    backend = run_local.LocalBackend(
        spec,
        str(tmp_path / "root"),
        str(tmp_path / "work"),
        "kfp",
        say=lambda _: None,
        platform=_PLATFORM,
        engine=engine,
    )
    backend.run()
    received = _received(backend, "Consumer")
    assert received["input"]["artifacts"]["data"]["artifacts"][0]["metadata"]["rows"] == 3
    assert received["env"]["AWS_ACCESS_KEY_ID"] == "the-secret" and received["env"]["PYTHONPATH"] == REPO
    log = open(backend.tasks["Consumer"].log_file).read()
    assert ("(forked)" in log) == (engine == "fork")
    assert backend.forks.servers == {}  # every server ended with the run
