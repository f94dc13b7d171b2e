"""Processes forked from one that imported their module once: `graft kfp run-local`'s tasks.

Every task of a compiled spec is `python -m kubeflow.kfp_entrypoint ...`, and a fresh interpreter
spends about 6 s importing TFX, TensorFlow, TFMA and Beam before it reads its first argument. A
server started with the task's exact environment does those imports once (`python -m
kubeflow.fork_server MODULE`: MODULE's leading import statements, those before any other
statement of it, and nothing of MODULE else) and forks a child per task. The child takes the
task's arguments, output file, folder and environment and runs MODULE as `__main__`, in a process
of its own with its own exit status: where a fresh `python -m MODULE` would be after the same
imports under the same environment, with these differences: it also holds the standard-library
modules the server uses and the `kubeflow` package; it shares the server's string-hash seed
(numpy's global generator is reseeded); its exit skips C++ static destructors (as
`components.files.exit_process` does on purpose after S3 use). A task whose environment differs
gets a server of its own.

Linux only: forking a process that imported TensorFlow is not safe on macOS (its Objective-C
runtime); there, and with `--engine process`, every task starts a fresh interpreter.

    python -m kubeflow.fork_server MODULE [PRELOAD ...]
        reads a JSON request a line; answers {"pid": N} as the child starts, {"rc": N} as it ends
        (on a descriptor of its own: what the imports print goes to its stderr)
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback

AVAILABLE = sys.platform.startswith("linux")
# How `graft kfp run-local` starts a task, its default first: forked where forking is safe.
ENGINES = ("fork", "process", "docker") if AVAILABLE else ("process", "docker")


def module_of(command: list[str], python: str = sys.executable) -> str | None:
    """MODULE of a `python -m MODULE ...` command run by this interpreter, else None."""
    if len(command) >= 3 and command[0] == python and command[1] == "-m":
        return command[2]
    return None


def _exit_status(exit_: SystemExit) -> int:
    """The status the interpreter gives for an uncaught SystemExit."""
    if exit_.code is None or isinstance(exit_.code, int):
        return exit_.code or 0
    print(exit_.code, file=sys.stderr)
    return 1


def _child(module: str, request: dict, replies) -> None:
    """In the forked process: the request's output file as stdout and stderr (appended to), its
    environment and folder, then `python -m MODULE ARGS`. Never returns."""
    code = 1
    try:
        replies.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores Ctrl-C; a task does not
        if request.get("new_session"):
            os.setsid()  # its own process group: a caller's timeout ends whatever it started too
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m` puts its folder first
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # not the server's stream, shared by every child
        sys.argv = [module, *request["args"]]  # runpy sets argv[0] to the module's file, as -m does
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_status(exit_)
        # What the interpreter does before it ends: atexit handlers, non-daemon threads joined.
        import atexit
        import threading

        threading._shutdown()
        atexit._run_exitfuncs()
    except SystemExit as exit_:  # raised by an exit handler
        code = _exit_status(exit_)
    except BaseException:  # an uncaught error: a traceback and status 1, as the interpreter gives
        traceback.print_exc()
        code = 1
    finally:
        # components.files.exit_process's ending, not imported: the server imports nothing of Graft.
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never the server's clean-up, never back into its loop


def _kill(pid: int, group: bool) -> None:
    try:
        if group:
            try:
                os.killpg(pid, signal.SIGKILL)
                return
            except ProcessLookupError:  # not yet its own group (before its setsid)
                pass
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _fork(module: str, request: dict, replies) -> int:
    """Forks a child for `request` and says its pid; returns its exit status, or -9 once it ran
    past request["timeout"] seconds."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            _child(module, request, replies)
        finally:
            os._exit(1)
    replies.write(json.dumps({"pid": pid}) + "\n")
    replies.flush()
    if request.get("timeout") is None:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            _kill(pid, bool(request.get("new_session")))
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.05)


def _leading_imports(module: str):
    """MODULE's import statements before its first other statement (a docstring aside), as code;
    for a package, its __main__'s (what `python -m` runs)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {module!r}")
    if spec.submodule_search_locations is not None:
        return _leading_imports(f"{module}.__main__")
    tree = ast.parse(spec.loader.get_source(spec.name), spec.origin)
    body = tree.body[1:] if ast.get_docstring(tree, clean=False) is not None else tree.body
    imports = []
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            break
        if getattr(node, "module", None) != "__future__":
            imports.append(node)
    return compile(ast.Module(body=imports, type_ignores=[]), spec.origin, "exec"), spec


def import_what_it_imports(module: str) -> None:
    """Runs MODULE's leading imports as its own first lines would, without running the module
    (a fresh `python -m` runs it once, as `__main__`: the child will)."""
    code, spec = _leading_imports(module)
    exec(code, {"__name__": f"{spec.name}.__imports__", "__package__": spec.parent})


def serve(module: str, preload: list[str] = ()) -> None:
    """The server's loop: `preload` and MODULE's leading imports, then a forked child per request.
    An import that fails is reported here and left to each child, which meets the same error where
    a fresh interpreter would (in the task's log, status 1)."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the imports print is not a reply
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the task; the client closes the server
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:
            traceback.print_exc()
    try:
        import_what_it_imports(module)
    except Exception:
        traceback.print_exc()
    for line in sys.stdin:
        replies.write(json.dumps({"rc": _fork(module, json.loads(line), replies)}) + "\n")
        replies.flush()


class ForkServer:
    """One server process for MODULE under one environment; `run` forks a child of it. Its own
    output (import-time warnings) is appended to the file `log` (default: this process's stderr)."""

    def __init__(self, module: str, env: dict, cwd: str, preload: list[str] = (), log: str | None = None):
        self.module, self.env = module, dict(env)
        self.child: tuple[int, bool] | None = None  # the running child's pid, and whether it leads a group
        errors = open(log, "a", encoding="utf-8") if log else None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, module, *preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=cwd,
                env=self.env,
            )
        finally:
            if errors:
                errors.close()  # the server has its own copy

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, args: list, output: str, cwd: str, env: dict | None = None, timeout=None, new_session=False) -> int:
        """`python -m MODULE ARGS` in a forked child from `cwd`, stdout and stderr appended to
        `output`, with `env` (default: the server's); its exit status (-9: killed at `timeout` s)."""
        self.start(args, output, cwd, env, timeout, new_session)
        return self.wait()

    def start(self, args: list, output: str, cwd: str, env: dict | None = None, timeout=None, new_session=False) -> int:
        """Starts what `run` runs; returns the child's pid. `wait` gives its exit status; after an
        error in between, `close` (which ends the child too)."""
        request = {
            "args": [str(a) for a in args],
            "output": output,
            "cwd": cwd,
            "env": self.env if env is None else env,
            "timeout": timeout,
            "new_session": new_session,
        }
        pid = self._reply(json.dumps(request) + "\n")["pid"]
        self.child = (pid, new_session)
        return pid

    def wait(self) -> int:
        rc = self._reply()["rc"]
        self.child = None
        return rc

    def kill_child(self) -> None:
        """SIGKILL to the running child (its process group, if it leads one); `wait` then says -9."""
        if self.child:
            _kill(*self.child)

    def _reply(self, request: str = "") -> dict:
        try:
            if request:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            reply = self.process.stdout.readline()
            if not reply:
                raise RuntimeError(f"the fork server for {self.module} ended (status {self.process.wait()})")
            return json.loads(reply)
        except BaseException:  # interrupted mid-request: its reply would answer the next one
            self.close()
            raise

    def close(self) -> None:
        """Ends the server, and the child it is running, if any."""
        if self.child:
            _kill(*self.child)
            self.child = None
        if self.alive():
            self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


class ForkServers:
    """A server per (module, environment), started on first use; `close` ends them all."""

    def __init__(self, log: str | None = None):
        self.servers: dict[tuple, ForkServer] = {}
        self.log = log

    def run(self, module: str, args: list, output: str, cwd: str, env: dict) -> int:
        """`python -m MODULE ARGS` from `cwd` with `env`, forked from the server for both."""
        key = (module, tuple(sorted(env.items())))
        server = self.servers.get(key)
        if server is None or not server.alive():
            server = self.servers[key] = ForkServer(module, env, cwd, log=self.log)
        return server.run(args, output, cwd)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
