"""The devices training runs on, checked against what the step was given: a Trainer (or Tuner)
scheduled on a GPU node whose TensorFlow cannot use the GPU would otherwise log a warning and
train for hours on the CPU, and succeed."""

from __future__ import annotations

import ctypes
import glob
import logging
import os

import tensorflow as tf

from components.contract import EXPECTED_GPUS_ENV

log = logging.getLogger("graft.trainer")


class AcceleratorMissing(RuntimeError):
    """The step was given GPUs that TensorFlow cannot see."""


def expected_gpus() -> int:
    value = os.environ.get(EXPECTED_GPUS_ENV, "").strip()
    return int(value) if value.isdigit() else 0


def _loadable(name: str) -> bool:
    """A shared library the dynamic loader finds, or one of the nvidia-* wheels' (TensorFlow
    looks in site-packages/nvidia/*/lib as well)."""
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        roots = {os.path.dirname(os.path.dirname(tf.__file__))}
        return any(glob.glob(os.path.join(root, "nvidia", "*", "lib", name + "*")) for root in roots)


def why_no_gpu() -> str:
    """What stops TensorFlow from seeing a GPU, from its build info and the libraries it loads."""
    info = tf.sysconfig.get_build_info()
    if not info.get("is_cuda_build"):
        return f"this TensorFlow ({tf.__version__}) is not built with CUDA"
    cuda, cudnn = str(info.get("cuda_version", "?")), str(info.get("cudnn_version", "?"))
    if not _loadable("libcuda.so.1"):
        return "no NVIDIA driver: libcuda.so.1 cannot be loaded (a GPU node's driver is mounted into the pod)"
    wanted = [f"libcudart.so.{cuda.split('.')[0]}", f"libcudnn.so.{cudnn.split('.')[0]}", "libcublas.so", "libcufft.so"]
    missing = [name for name in wanted if not _loadable(name)]
    if missing:
        return (
            f"CUDA libraries missing: {', '.join(missing)}; TensorFlow {tf.__version__} needs CUDA {cuda} and "
            f"cuDNN {cudnn} (the image's GPU extra, tensorflow[and-cuda], installs them)"
        )
    return (
        f"the driver and the CUDA {cuda} / cuDNN {cudnn} libraries load, yet TensorFlow sees no GPU: the driver "
        "may be older than CUDA needs (nvidia-smi), or CUDA_VISIBLE_DEVICES hides the GPU"
    )


def check(expected: int, allow_cpu_fallback: bool) -> bool:
    """Raises AcceleratorMissing (before any data is read) when TensorFlow sees fewer GPUs than
    `expected`; with allow_cpu_fallback it warns instead. Returns whether training falls back."""
    seen = len(tf.config.list_physical_devices("GPU"))
    if seen >= expected:
        return False
    message = f"this step was given {expected} GPU(s) but TensorFlow sees {seen}: {why_no_gpu()}"
    if not allow_cpu_fallback:
        raise AcceleratorMissing(f"{message}. Set allow_cpu_fallback: true to train on the CPU anyway.")
    log.warning("%s; training on the CPU (allow_cpu_fallback)", message)
    return True


def describe(policy: str, fallback: bool) -> dict:
    """The devices used, for the summary and report: GPU models and count, precision policy."""
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return {
        "gpu_count": len(gpus),
        "gpus": names,
        "precision": policy,
        "expected_gpus": expected_gpus(),
        "cpu_fallback": fallback,
    }
