"""Processes forked from one that imported their module once: `graft kfp run-local`'s tasks.

Every task of a compiled spec is `python -m kubeflow.kfp_entrypoint ...`, and a fresh interpreter
spends about 6 s importing TFX, TensorFlow, TFMA and Beam before it reads its first argument. A
server started with the task's exact environment does those imports once
(`python -m kubeflow.fork_server MODULE`: it runs MODULE's top-level import statements, nothing
else of it, and nothing else) and forks a child per task. The child is where a fresh interpreter would be after the same imports
under the same environment; it then takes the task's arguments, output file, folder and
environment and runs MODULE as `__main__`, in a process of its own with its own exit status. A
task cannot lean on anything a container lacks: the server imported only what the task's own
command imports first. A task whose environment differs gets a server of its own.

Linux only: forking a process that imported TensorFlow is not safe on macOS (its Objective-C
runtime); there, and with `--engine process`, every task starts a fresh interpreter.

    python -m kubeflow.fork_server MODULE   (reads a JSON request a line; answers {"pid": N} a line
                                            as the child starts, {"rc": N} as it ends)
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import runpy
import subprocess
import sys
import time
import traceback

AVAILABLE = sys.platform.startswith("linux")


def module_of(command: list[str], python: str = sys.executable) -> str | None:
    """MODULE of a `python -m MODULE ...` command run by this interpreter, else None."""
    if len(command) >= 3 and command[0] == python and command[1] == "-m":
        return command[2]
    return None


def _child(module: str, request: dict) -> None:
    """In the forked process: the request's output file as stdout and stderr (appended to), its
    environment and folder, then `python -m MODULE ARGS`. Never returns."""
    code = 1
    try:
        if request.get("new_session"):
            os.setsid()  # its own process group: a caller's timeout ends whatever it started too
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [module, *request["args"]]  # runpy sets argv[0] to the module's file, as -m does
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:  # as the interpreter reads it
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
    except BaseException:  # an uncaught error: a traceback and status 1, as the interpreter gives
        traceback.print_exc()
        code = 1
    finally:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never the server's clean-up, never back into its loop


def _fork(module: str, request: dict) -> int:
    """Forks a child for `request` and says its pid ({"pid": N} a line); returns its exit
    status, or -9 once it ran past request["timeout"]."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            _child(module, request)
        finally:
            os._exit(1)
    sys.stdout.write(json.dumps({"pid": pid}) + "\n")
    sys.stdout.flush()
    deadline = None if request.get("timeout") is None else time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() > deadline:
            try:
                os.killpg(pid, 9) if request.get("new_session") else os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.05)


def import_what_it_imports(module: str) -> None:
    """Runs MODULE's top-level `import` and `from ... import` statements, as its own first lines
    would, without running the module (which a fresh `python -m` runs once, as `__main__`)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(spec.loader.get_source(module), spec.origin)
    imports = [
        node
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", "") != "__future__"
    ]
    code = compile(ast.Module(body=imports, type_ignores=[]), spec.origin, "exec")
    exec(code, {"__name__": f"{module}.__imports__", "__package__": spec.parent})


def serve(module: str, preload: list[str] = ()) -> None:
    """The server's loop: `preload` imported and what MODULE imports, then a forked child per request."""
    for name in preload:
        importlib.import_module(name)
    import_what_it_imports(module)
    for line in sys.stdin:
        sys.stdout.write(json.dumps({"rc": _fork(module, json.loads(line))}) + "\n")
        sys.stdout.flush()


class ForkServer:
    """One server process for MODULE under one environment; `run` forks a child of it."""

    def __init__(self, module: str, env: dict, cwd: str, preload: list[str] = ()):
        self.module, self.env = module, dict(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, module, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=self.env,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, args: list, output: str, cwd: str, env: dict | None = None, timeout=None, new_session=False) -> int:
        """`python -m MODULE ARGS` in a forked child, stdout and stderr appended to `output`;
        its exit status (-9: killed at `timeout` seconds)."""
        self.start(args, output, cwd, env, timeout, new_session)
        return self.wait()

    def start(self, args: list, output: str, cwd: str, env: dict | None = None, timeout=None, new_session=False) -> int:
        """Starts what `run` runs; returns the child's pid. `wait` gives its exit status."""
        request = {
            "args": [str(a) for a in args],
            "output": output,
            "cwd": cwd,
            "env": self.env if env is None else env,
            "timeout": timeout,
            "new_session": new_session,
        }
        return self._reply(json.dumps(request) + "\n")["pid"]

    def wait(self) -> int:
        return self._reply()["rc"]

    def _reply(self, request: str = "") -> dict:
        try:
            if request:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            reply = self.process.stdout.readline()
        except BaseException:  # interrupted mid-request: its reply would answer the next one
            self.close()
            raise
        if not reply:
            raise RuntimeError(f"the fork server for {self.module} ended (status {self.process.wait()})")
        return json.loads(reply)

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


class ForkServers:
    """A server per (module, environment), started on first use; `close` ends them all."""

    def __init__(self):
        self.servers: dict[tuple, ForkServer] = {}

    def run(self, module: str, args: list, output: str, env: dict, cwd: str) -> int:
        key = (module, tuple(sorted(env.items())))
        server = self.servers.get(key)
        if server is None or not server.alive():
            server = self.servers[key] = ForkServer(module, env, cwd)
        return server.run(args, output, cwd)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
