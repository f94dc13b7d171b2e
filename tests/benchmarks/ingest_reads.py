"""`python -m tests.benchmarks.ingest_reads [--images N]`: ExampleGen's pass over the files before
Beam (the sha256 of every image: duplicates and golden-set images are skipped by content) on a
local S3 server, one read at a time against `READ_THREADS` at a time, side by side in one process.

Every image on an object store is one request; the pass read them in series, so its time grew
with the images times the store's latency before Beam started. Prints both times, their ratio,
and one JSON line. The local S3 server is moto's (tests/s3_server.py), whose every request is
Python: a real store's latency is the network's, which threads overlap the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
from components import files
from components.example_gen import image_ingest
root = sys.argv[1]
files.register(root)
listing = image_ingest.list_split(root)
paths = [p for p, _ in listing.files]
times = {}
for name, threads in (("one at a time", 1), (f"{image_ingest.READ_THREADS} at a time", image_ingest.READ_THREADS)):
    image_ingest.READ_THREADS = threads
    started = time.perf_counter()
    found = image_ingest.digests(root, paths)
    times[name] = time.perf_counter() - started
    assert None not in found and len(found) == len(paths)
print(json.dumps({"images": len(paths), "seconds": times}))
files.exit_process(0)
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600, help="images uploaded, in 3 classes (default 600)")
    args = parser.parse_args(argv)

    import numpy as np
    from PIL import Image

    from tests.conftest import S3_BUCKET
    from tests.s3_server import local_s3

    with tempfile.TemporaryDirectory() as work, local_s3(S3_BUCKET) as (env, client):
        rng = np.random.default_rng(0)
        for i in range(args.images):
            path = os.path.join(work, f"class_{i % 3}", f"{i:05d}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
            client.upload_file(path, S3_BUCKET, f"bench/{os.path.relpath(path, work)}")
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, f"s3://{S3_BUCKET}/bench"],
            env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    serial, parallel = outcome["seconds"].values()
    for name, seconds in outcome["seconds"].items():
        print(f"{outcome['images']} images on S3, read and hashed {name}: {seconds:.2f} s")
    print(f"ratio: {serial / parallel:.1f}x faster")
    print(json.dumps({**outcome, "ratio": serial / parallel}))


if __name__ == "__main__":
    main()
