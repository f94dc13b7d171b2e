"""Multi-device training code, run in CI on two logical CPU devices (MirroredStrategy)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # every test here trains or exports a model

_STEP_RATIOS = r"""
import json, os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from components.trainer.model import apply_stage, build_model
from components.trainer.optimizers import compile_for_stage, discriminative_multipliers, variable_key
from components.trainer.stages import Stage
from tests.conftest import tiny_trainer_settings

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
data = tf.data.Dataset.from_tensor_slices(
    (rng.uniform(-1, 1, (32, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 32))).batch(32)
stage = Stage("all", 1, "all", 0.5, optimizer="sgd")
steps, initial = {}, None
for lowest in (0.0, 0.1):  # 0: discriminative rates off
    with strategy.scope():
        model = build_model(tiny_trainer_settings(backbone="mobilenet_v2"), 3)
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
        apply_stage(model, stage)
        compile_for_stage(model, stage, discriminative_lr=lowest)
    before = {variable_key(v): v.numpy().copy() for v in model.trainable_variables}
    model.fit(data, epochs=1, verbose=0)  # one step of plain SGD: the step is lr x the gradient
    steps[lowest] = {variable_key(v): float(np.abs(v.numpy() - before[variable_key(v)]).sum()) for v in model.trainable_variables}
expected = discriminative_multipliers(model, 0.1)
compared = {k: (steps[0.1][k] / steps[0.0][k], expected.get(k, 1.0)) for k in steps[0.0] if steps[0.0][k] > 1e-5}
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "compared": compared}))
"""


def test_discriminative_rates_apply_under_mirrored_strategy():
    result = subprocess.run([sys.executable, "-c", _STEP_RATIOS], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    compared = outcome["compared"]  # variable: (measured step ratio, its multiplier)
    assert len(compared) >= 10 and min(m for _, m in compared.values()) < 0.7, compared
    for name, (ratio, multiplier) in compared.items():
        assert abs(ratio - multiplier) < 0.05 * multiplier, (name, ratio, multiplier)
