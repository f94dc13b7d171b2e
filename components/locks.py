"""One holder at a time for a folder Graft writes to: a pipeline's root (one run at a time) and a
serving directory (one publish at a time).

On a local disk the lock is the kernel's (`flock` on `<folder>/<name>`): a killed process's lock
is released with it, so a lock left by a killed run is free, and the next holder says whose it
was. The lock file holds the holder's description (run, process, host, start) for the message a
waiting run prints. On an object store (gs://, s3://) there is no atomic create: the lock is a
lease object refreshed while held and taken over when older than `stale_seconds`; two writers
racing for it in the same second can both believe they won, so on Kubeflow the schedule's
max-concurrency 1 is the guard, and this lease only narrows the window.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from components import files

POLL_SECONDS = 1.0


class LockBusy(RuntimeError):
    """Another holder has the lock; `holder` describes it."""

    def __init__(self, path: str, holder: dict):
        self.path, self.holder = path, holder
        started = holder.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "an unknown time"
        super().__init__(
            f"{holder.get('what', 'a run')} {holder.get('run_id', '?')} holds {path} "
            f"(process {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when})"
        )


@dataclass
class Lock:
    path: str
    holder: dict
    previous: Optional[dict] = None  # a dead holder's description, when its lock was taken over
    _handle: object = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._stop.set()
        if self._handle is not None:  # local: emptied (a clean release), then the kernel's lock let go
            import fcntl

            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        elif files.exists(self.path) and _read(self.path).get("token") == self.holder["token"]:
            import tensorflow as tf

            tf.io.gfile.remove(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def describe(what: str, run_id: str) -> dict:
    """This process as a lock holder."""
    now = time.time()
    return {
        "what": what,
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": now,
        "heartbeat": now,
        "token": uuid.uuid4().hex,
    }


def acquire(folder: str, name: str, holder: dict, wait_seconds: float = 0, stale_seconds: float = 300) -> Lock:
    """The lock `<folder>/<name>` for `holder` (see `describe`), waiting up to `wait_seconds`
    for the current holder to finish; raises LockBusy describing it when it does not."""
    path = os.path.join(folder, name)
    deadline = time.time() + max(0.0, wait_seconds)
    while True:
        try:
            return (_acquire_remote if "://" in folder else _acquire_local)(folder, path, holder, stale_seconds)
        except LockBusy:
            if time.time() >= deadline:
                raise
            time.sleep(min(POLL_SECONDS, max(0.05, deadline - time.time())))


def _read(path: str) -> dict:
    try:
        return json.loads(files.read(path).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _acquire_local(folder: str, path: str, holder: dict, stale_seconds: float) -> Lock:
    import fcntl

    os.makedirs(folder, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while the lock is held)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LockBusy(path, _read(path)) from None
    handle.seek(0)
    previous = json.loads(handle.read() or "{}") or None  # left by a holder that died without releasing
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder))
    handle.flush()
    return Lock(path, holder, previous, handle)


def _acquire_remote(folder: str, path: str, holder: dict, stale_seconds: float) -> Lock:
    import tensorflow as tf

    files.register(folder)

    current = _read(path) if tf.io.gfile.exists(path) else {}
    previous = None
    if current:
        if time.time() - current.get("heartbeat", 0) < stale_seconds:
            raise LockBusy(path, current)
        previous = current  # its holder stopped refreshing it: died
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(holder))
    time.sleep(0.2)  # let a racing writer's lease land, then see whose stands
    if _read(path).get("token") != holder["token"]:
        raise LockBusy(path, _read(path))
    lock = Lock(path, holder, previous)
    threading.Thread(target=_refresh, args=(lock, stale_seconds / 4), daemon=True).start()
    return lock


def _refresh(lock: Lock, every: float) -> None:
    import tensorflow as tf

    while not lock._stop.wait(every):
        lock.holder["heartbeat"] = time.time()
        with tf.io.gfile.GFile(lock.path, "w") as f:
            f.write(json.dumps(lock.holder))
