"""A training step given GPUs that TensorFlow cannot see fails at its start, naming the cause,
or with allow_cpu_fallback warns and trains (the tuner e2e test runs that case through the DAG)."""

import traceback

import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components.trainer import devices
from components.trainer.run_fn import run_fn
from tests.conftest import tiny_trainer_settings


def _fn_args(tmp_path, settings) -> FnArgs:
    missing = str(tmp_path / "no-such-split" / "*.gz")  # reading any data would fail differently
    return FnArgs(
        train_files=[missing],
        eval_files=[missing],
        transform_graph_path=str(tmp_path / "no-transform-graph"),
        serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "model_run"),
        custom_config=settings.to_dict(),
    )


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as a GPU node without a driver, whatever machine runs the test."""
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(devices, "_loadable", lambda name: False)


def test_a_trainer_given_a_gpu_tensorflow_cannot_see_fails_before_reading_data(tmp_path, monkeypatch, no_gpu):
    monkeypatch.setenv("GRAFT_TRAINER_GPUS", "1")
    with pytest.raises(
        devices.AcceleratorMissing,
        match=r"given 1 GPU\(s\) but TensorFlow sees 0: no NVIDIA driver: libcuda.so.1 cannot be loaded.*"
        r"allow_cpu_fallback: true",
    ):
        run_fn(_fn_args(tmp_path, tiny_trainer_settings()))
    # Locally (no accelerator given) nothing is checked: the same call goes on to read the data.
    monkeypatch.delenv("GRAFT_TRAINER_GPUS")
    with pytest.raises(Exception) as reached:
        run_fn(_fn_args(tmp_path, tiny_trainer_settings()))
    assert "prepare" in [frame.name for frame in traceback.extract_tb(reached.value.__traceback__)]


def test_the_cause_is_named_from_what_loads(monkeypatch):
    present = {"libcuda.so.1", "libcudart.so.12", "libcublas.so", "libcufft.so"}
    monkeypatch.setattr(devices, "_loadable", lambda name: name in present)
    assert devices.why_no_gpu().startswith("CUDA libraries missing: libcudnn.so.8; TensorFlow 2.16")
    assert "CUDA 12.3 and cuDNN 8" in devices.why_no_gpu()
    present.add("libcudnn.so.8")
    assert "yet TensorFlow sees no GPU" in devices.why_no_gpu()


def test_with_cpu_fallback_a_missing_gpu_is_a_warning(monkeypatch, caplog, no_gpu):
    assert devices.check(1, allow_cpu_fallback=True) is True
    assert "training on the CPU (allow_cpu_fallback)" in caplog.text
    assert devices.check(0, allow_cpu_fallback=False) is False
    monkeypatch.setenv("GRAFT_TRAINER_GPUS", "2")
    assert devices.describe("float32", True) == {
        "gpu_count": 0,
        "gpus": [],
        "precision": "float32",
        "expected_gpus": 2,
        "cpu_fallback": True,
    }
