"""The image's GPU libraries against what TensorFlow was built with, checked when the image is
built (kubeflow/install.sh gpu): TensorFlow given other CUDA or cuDNN versions, or none, logs a
warning and trains on the CPU.

    python -m kubeflow.gpu_libraries [--lock requirements-gpu.lock]   # exit 1 on a mismatch
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys

_REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(_REPO_DIR, "requirements-gpu.lock")
CUDA_RUNTIME, CUDNN = "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12"


def read_lock(path: str = LOCK) -> dict:
    """{package: version} of a lock file's `name==version` lines."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def mismatches(build_info: dict, versions: dict) -> list[str]:
    """What differs between TensorFlow's build info (cuda_version '12.3', cudnn_version '8') and
    the CUDA runtime and cuDNN versions given ({package: version}; None: not installed)."""
    problems = []
    cuda, cudnn = str(build_info.get("cuda_version", "")), str(build_info.get("cudnn_version", ""))
    runtime, dnn = versions.get(CUDA_RUNTIME), versions.get(CUDNN)
    if runtime is None or ".".join(runtime.split(".")[:2]) != cuda:
        problems.append(f"{CUDA_RUNTIME} {runtime or 'not installed'}: TensorFlow was built with CUDA {cuda}")
    if dnn is None or dnn.split(".")[0] != cudnn.split(".")[0]:
        problems.append(f"{CUDNN} {dnn or 'not installed'}: TensorFlow was built with cuDNN {cudnn}")
    return problems


def installed(packages) -> dict:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default=LOCK, help="the GPU lock file (default: requirements-gpu.lock)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    pins = read_lock(args.lock)
    versions = installed(pins)
    problems = mismatches(tf.sysconfig.get_build_info(), versions)
    problems += [
        f"{name} {versions[name] or 'not installed'}, the lock pins {pin}"
        for name, pin in pins.items()
        if versions[name] != pin
    ]
    if problems:
        print(
            "error: the GPU libraries do not match TensorFlow " + tf.__version__ + ":\n  " + "\n  ".join(problems),
            file=sys.stderr,
        )
        return 1
    info = tf.sysconfig.get_build_info()
    print(f"GPU libraries ok: CUDA {info['cuda_version']} ({versions[CUDA_RUNTIME]}), cuDNN {versions[CUDNN]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
