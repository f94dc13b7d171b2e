"""A task module for tests/test_fork_server.py: run as `python -m tests.fork_probe ARGS`, prints
what its process got (arguments, folder, environment, process ids, modules loaded) as one JSON
line, then exits with the status in PROBE_EXIT (or raises PROBE_RAISE)."""

import json
import os
import sys

print(f"top level ran as {__name__}")  # once per task, as __main__: the server runs only the imports above

if __name__ == "__main__":
    if os.environ.get("PROBE_RAISE"):
        raise RuntimeError(os.environ["PROBE_RAISE"])
    print(
        json.dumps(
            {
                "argv": sys.argv,
                "cwd": os.getcwd(),
                "path0": sys.path[0],
                "env": dict(os.environ),
                "pid": os.getpid(),
                "modules": sorted(sys.modules),
            }
        )
    )
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
