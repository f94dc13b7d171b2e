"""`python -m tests.benchmarks.hostile_images`: what one hostile request costs the serving graph's
image path, without and with the header check.

Each file declares a 20,000 x 20,000 image (400 million pixels): whole decodable PNG (a zlib
stream of zeros), JPEG and GIF files, and small files whose headers alone declare it (JPEG, GIF,
BMP). Each case runs in a fresh process through
`preprocess_image_bytes` (the function the Transform graph, and so every serving signature,
calls): without a limit (as before), and with the default max_image_pixels (50 million). It
prints one row per case (time, the process's peak memory over its baseline, the answer) and, last,
one JSON object.
"""

import json
import os
import subprocess
import sys

from tests.hostile_images import BOMBS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIDE = 20_000
LIMIT = 50_000_000

_CASE = r"""
import json, os, resource, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
from components.backbones.preprocessing import preprocess_image_bytes
data = open(sys.argv[1], "rb").read()
limit = int(sys.argv[2]) or None
serve = tf.function(lambda b: preprocess_image_bytes(b, "mobilenet_v2", 32, limit))  # a graph, as served
serve(tf.constant([open(sys.argv[3], "rb").read()]))  # warm: traced, loaded
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.time()
try:
    out = serve(tf.constant([data]))
    answer = f"decoded: mean pixel {float(tf.reduce_mean(out)):.3f}"
except tf.errors.InvalidArgumentError as err:
    import re
    found = re.search(r"assertion failed: \[(.*?)\]", err.message)
    said = found.group(1) if found else re.sub(r"\{\{[^}]*\}\}\s*", "", err.message).strip().splitlines()[0]
    answer = "refused: " + said[:120]
seconds = time.time() - started
print(json.dumps({"seconds": round(seconds, 3), "extra_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024), "answer": answer}))
"""


def run_case(path: str, limit: int, normal: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CASE, path, str(limit), normal], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"seconds": None, "extra_mb": None, "answer": f"process failed (exit {result.returncode})"}
    return json.loads(lines[-1])


def main() -> int:
    import tempfile

    from tests.conftest import encode, random_image

    work = tempfile.mkdtemp(prefix="graft-hostile-")
    normal = os.path.join(work, "normal.png")
    with open(normal, "wb") as f:
        f.write(encode(random_image(64, 64), "PNG"))
    rows = []
    cases = {
        f"{name} (header only)": (name, lambda make=make: make(SIDE, SIDE))
        for name, make in BOMBS.items()
        if name != "png"
    }
    cases.update(
        {
            f"{name} (decodable)": (name, lambda make=make: make(SIDE, SIDE, full=True))
            for name, make in BOMBS.items()
            if name != "bmp"
        }
    )
    for case, (name, make) in sorted(cases.items()):
        path = os.path.join(work, f"bomb.{name}")
        with open(path, "wb") as f:
            f.write(make())
        row = {"format": case, "declared": f"{SIDE}x{SIDE}", "file_bytes": os.path.getsize(path)}
        row["before"] = run_case(path, 0, normal)
        row["after"] = run_case(path, LIMIT, normal)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
