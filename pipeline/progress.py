"""A concise progress view on the terminal, everything else to a log file.

TFX, Beam and TensorFlow log a great deal, some of it from C++ straight to file descriptor 2.
Unless --verbose, descriptors 1 and 2 are pointed at the log file, and the terminal gets only
component starts and ends (with elapsed time), Graft's own messages (training epochs), and
the end-of-run summary.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from absl import logging as absl_logging

_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_CACHED = re.compile(r"A cached execution \d+ is used\.")
_SKIPPED = re.compile(r"Skipping execution for (\S+)")  # a Cond said no (the RetrainGate: nothing new)


class Progress(logging.Handler):
    """Turns TFX's component log lines and graft.* records into terminal lines."""

    def __init__(self, stream, err=None):
        super().__init__(logging.INFO)
        self.stream = stream
        self.err = err or sys.stderr  # the terminal's stderr, for errors the user must see
        self.started = time.time()
        self.current = None
        self._component_start = 0.0
        self._cached = False
        self._skipped = False
        self.seconds = {}

    def say(self, text: str) -> None:
        self.stream.write(f"[{time.time() - self.started:6.1f}s] {text}\n")
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed third-party record must not break the run
            return
        if record.name.startswith("graft"):
            self.say(f"    {message}")
            return
        if match := _RUNNING.search(message):
            self.current, self._component_start, self._cached = match.group(1), time.time(), False
            self._skipped = False
            self.say(f"{self.current} ...")
        elif _CACHED.search(message):
            self._cached = True
        elif _SKIPPED.search(message):
            self._skipped = True
        elif (match := _FINISHED.search(message)) and self._skipped:
            self.say(f"{match.group(1)} skipped")
            self.current = None
        elif match := _FINISHED.search(message):
            took = time.time() - self._component_start
            self.seconds[match.group(1)] = round(took, 1)
            self.say(f"{match.group(1)} {'cached' if self._cached else 'done'} in {took:.1f}s")
            self.current = None


def start(log_path: str, verbose: bool) -> Progress:
    """Routes logs: everything to `log_path` (or the terminal with verbose); returns the view."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logging.getLogger("graft").setLevel(logging.INFO)
    if verbose:
        progress = Progress(sys.stdout)
        root.addHandler(progress)
        return progress
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    terminal_err = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.StreamHandler(sys.stderr)  # descriptor 2: the log file
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    progress = Progress(terminal, terminal_err)
    root.addHandler(progress)
    return progress
