"""`make bench-scale N="20000 80000"`: what a local run costs in time and memory as the data grows.

For each N it generates N photo-like 256 px JPEGs (~20 KB each, two classes; kept under
--workdir between runs), runs `graft run` on them with a cheap training recipe (a frozen
backbone, one epoch, cached features) so that the pipeline's data handling dominates, samples the
resident memory of the whole process tree every 0.2 s, and prints per component seconds per 1,000
images and the peak memory in each component's time window, then the ratios of the largest N to
the smallest, the Trainer's image decoding rate against the machine's (tests/benchmarks/decode_rate,
on the largest run) and one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ("left_bright", "plain")
IMAGE_SIDE = 256

RECIPE = {
    "backbone": "mobilenet_v2",
    "backbone_kwargs": {"alpha": 0.35},
    "weights": "none",
    "allow_frozen_random_backbone": True,
    "image_size": 64,
    "stages": [{"name": "head", "epochs": 1, "trainable": "none", "learning_rate": 0.01}],
    "min_head_steps": 1,
    "min_accuracy": 0.0,
}


def _photo(index: int) -> bytes:
    """A smooth random field with grain, like a photo crop to a JPEG codec; class 0 brighter on the left."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(low).resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC)).astype(np.int16)
    image += rng.integers(-28, 29, image.shape).astype(np.int16)
    if index % 2 == 0:
        image[:, : IMAGE_SIDE // 2] += 40
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _write_one(args) -> int:
    root, index = args
    path = os.path.join(root, CLASSES[index % 2], f"{index:07d}.jpg")
    data = _photo(index)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def make_images(root: str, count: int) -> int:
    """`count` JPEGs under root/<class>/ (reused when a finished set is there); returns bytes on disk."""
    stamp = root.rstrip("/") + ".complete"  # beside the folder: a file inside would be ingested
    if os.path.exists(stamp):
        with open(stamp) as f:
            return int(f.read())
    for name in CLASSES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    started = time.time()
    with multiprocessing.Pool() as pool:
        total = 0
        for done, size in enumerate(pool.imap_unordered(_write_one, ((root, i) for i in range(count)), 256), 1):
            total += size
            if done % 10_000 == 0:
                print(f"  generated {done}/{count} images", flush=True)
    print(f"  {count} images, {total / 1e6:.0f} MB in {time.time() - started:.0f} s", flush=True)
    with open(stamp, "w") as f:
        f.write(str(total))
    return total


class TreeMemory:
    """Samples the resident memory of a process and all its children (Beam workers included)."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                processes = [self._root] + self._root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((time.time(), total))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def component_windows(metadata_path: str, pipeline_name: str, run_id: str) -> dict:
    """{component: (start, end)} in seconds since the epoch, from ML Metadata's executions."""
    from pipeline.summary import run_outputs

    windows = {}
    for node_id, node in run_outputs(metadata_path, pipeline_name, run_id).items():
        execution = node["execution"]
        windows[node_id] = (execution.create_time_since_epoch / 1000, execution.last_update_time_since_epoch / 1000)
    return windows


def run_once(workdir: str, count: int, extra: dict) -> dict:
    data_dir = os.path.join(workdir, f"images-{count}")
    data_bytes = make_images(data_dir, count)
    name = f"scale-{count}"
    run_dir = os.path.join(workdir, "runs", f"{name}-{int(time.time())}")
    config = dict(
        RECIPE,
        pipeline_name=name,
        data_dir=data_dir,
        pipeline_root=os.path.join(run_dir, "root"),
        metadata_path=os.path.join(run_dir, "metadata.db"),
        enable_cache=False,
        **extra,
    )
    config_path = os.path.join(workdir, f"{name}.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    summary_path = os.path.join(run_dir, "summary.json")
    started = time.time()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.cli import main; sys.exit(main())",
            "run",
            "--config",
            config_path,
            "--summary-json",
            summary_path,
        ],
        cwd=REPO,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
    )
    memory = TreeMemory(process.pid)
    code = process.wait()
    memory.stop()
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"graft run on {count} images failed (exit {code}); see its log under {run_dir}")
    with open(summary_path) as f:
        summary = json.load(f)
    windows = component_windows(config["metadata_path"], name, summary["run_id"])
    components = {
        node: {
            "seconds": summary["component_seconds"].get(node, round(end - start, 1)),
            "peak_rss_mb": round(memory.peak(start, end) / 2**20),
        }
        for node, (start, end) in sorted(windows.items(), key=lambda item: item[1][0])
    }
    return {
        "images": count,
        "data_mb": round(data_bytes / 1e6),
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(memory.peak() / 2**20),
        "components": components,
        "pipeline_root": config["pipeline_root"],
    }


def decode_rate(pipeline_root: str) -> dict:
    """tests/benchmarks/decode_rate on one finished run, in its own process (its printout shown)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.decode_rate",
            pipeline_root,
            "--image-size",
            str(RECIPE["image_size"]),
        ],
        cwd=REPO,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"decode_rate failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    print("\nThe Trainer's image decoding, on the largest run's training split:")
    print("\n".join(lines[:-1]))
    return json.loads(lines[-1])


def print_result(result: dict) -> None:
    n = result["images"]
    print(
        f"\n{n} images ({result['data_mb']} MB): wall {result['wall_seconds']} s, "
        f"peak RSS of the process tree {result['peak_rss_mb']} MB"
    )
    print(f"  {'component':<28}{'seconds':>9}{'s / 1k images':>15}{'peak RSS MB':>13}")
    for node, row in result["components"].items():
        print(f"  {node:<28}{row['seconds']:>9.1f}{row['seconds'] / n * 1000:>15.2f}{row['peak_rss_mb']:>13}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[20_000, 80_000], help="data set sizes to run")
    parser.add_argument("--workdir", default="/tmp/graft-bench-scale", help="images and runs go here (images reused)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help='a config option for every run, e.g. beam_direct_running_mode="multi_processing"',
    )
    args = parser.parse_args(argv)
    extra = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    os.makedirs(args.workdir, exist_ok=True)
    results = []
    for count in args.images:
        print(f"== {count} images", flush=True)
        results.append(run_once(args.workdir, count, extra))
        print_result(results[-1])
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(f"\n{large['images']} vs {small['images']} images:")
        print(f"  peak RSS ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
        for node in large["components"]:
            if node in small["components"] and small["components"][node]["seconds"] > 0:
                per_small = small["components"][node]["seconds"] / small["images"]
                per_large = large["components"][node]["seconds"] / large["images"]
                print(f"  {node}: seconds per image ratio {per_large / per_small:.2f}")
    decoding = decode_rate(results[-1]["pipeline_root"])
    print(json.dumps({"bench": "scale", "settings": extra, "results": results, "decoding": decoding}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
