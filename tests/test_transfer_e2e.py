"""Transfer learning through the default path, measured: a small backbone pretrained here on one
task (which of ten digits), its weights file given to the pipeline with nothing else changed
(stages auto = two_stage, BatchNorm frozen, the top layers unfrozen), on a second task with
other images (even or odd, 360 images): far above the same pipeline from scratch, and
fine-tuning no worse than the frozen stage."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image
from sklearn.datasets import load_digits

from components.backbones.preprocessing import preprocess_image_bytes
from components.trainer.model import backbone_of, build_model
from components.trainer.stages import Stage
from components.trainer.training import TrainingOptions, train_stages
from tests.conftest import encode, run_graft, tiny_trainer_settings


def _pixels(image) -> np.ndarray:
    return np.round(image * (255.0 / 16.0)).astype(np.uint8)


def pretrain_backbone(path: str) -> float:
    """Trains the slim MobileNetV2 from scratch to tell ten digits apart, on the images the second
    task does not use; saves the backbone's weights to `path` (a Keras weights file, as users pass
    ImageNet's); returns its held-out accuracy."""
    keras.utils.set_random_seed(0)
    digits = load_digits()
    chosen = [i for i in range(len(digits.target)) if i % 5]
    pngs = [encode(_pixels(digits.images[i]), "PNG") for i in chosen]
    images = preprocess_image_bytes(tf.constant(pngs), "mobilenet_v2", 32)
    labels = digits.target[chosen]
    cut = int(0.85 * len(chosen))
    train = tf.data.Dataset.from_tensor_slices((images[:cut], labels[:cut])).shuffle(cut, seed=0).batch(32)
    held_out = tf.data.Dataset.from_tensor_slices((images[cut:], labels[cut:])).batch(64)
    settings = tiny_trainer_settings(train_batchnorm=True, batchnorm_momentum=0.9)
    model = build_model(settings, 10)
    history = train_stages(model, [Stage("pretrain", 10, "all", 0.002)], train, held_out, TrainingOptions(settings, 39))
    backbone_of(model).save_weights(path)
    return history[-1]["val_accuracy"]


def write_parity_task(root: str) -> int:
    """The images the pretraining never saw, as class folders even/ and odd/."""
    digits = load_digits()
    written = 0
    for i in range(0, len(digits.target), 5):
        folder = os.path.join(root, "odd" if digits.target[i] % 2 else "even")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(_pixels(digits.images[i]), mode="L").save(os.path.join(folder, f"{i:04d}.png"))
        written += 1
    return written


def _config(tmp_path, name: str, data: str, weights: str) -> dict:
    return {  # nothing about stages or BatchNorm: the defaults decide
        "pipeline_name": name,
        "pipeline_root": str(tmp_path / name / "root"),
        "metadata_path": str(tmp_path / name / "metadata.db"),
        "serving_dir": str(tmp_path / name / "serving"),
        "data_dir": data,
        "backbone": "mobilenet_v2",
        "backbone_kwargs": {"alpha": 0.35},
        "image_size": 32,
        "weights": weights,
        "validation_percent": 25,
        "min_accuracy": 0.0,
    }


@pytest.mark.e2e
def test_a_pretrained_backbone_transfers_through_the_default_path(tmp_path):
    weights = str(tmp_path / "pretrained_mobilenet_v2.h5")
    assert pretrain_backbone(weights) > 0.8  # it learned its own task
    data = str(tmp_path / "parity")
    count = write_parity_task(data)

    transfer, output = run_graft(tmp_path, _config(tmp_path, "transfer", data, weights), "transfer")
    scratch, scratch_output = run_graft(tmp_path, _config(tmp_path, "scratch", data, "none"), "scratch")
    transfer_accuracy = transfer["metrics"]["sparse_categorical_accuracy"]
    scratch_accuracy = scratch["metrics"]["sparse_categorical_accuracy"]
    print(
        f"\neval accuracy, even or odd ({count} images): pretrained {transfer_accuracy:.3f}, "
        f"from scratch {scratch_accuracy:.3f}"
    )
    assert "head" in output and "fine_tune" in output  # two_stage, the default with pretrained weights
    assert "training from scratch" in scratch_output
    assert transfer_accuracy >= 0.8 and transfer_accuracy >= scratch_accuracy + 0.15

    history = transfer["training_history"]
    frozen = [row for row in history if row["stage"] == "head"][-1]["val_accuracy"]
    fine_tuned = [row for row in history if row["stage"] == "fine_tune"][-1]["val_accuracy"]
    one_example = 1 / (0.25 * 0.8 * count)  # validation part: a quarter of the 80% train split
    assert fine_tuned >= frozen - one_example - 1e-6, (frozen, fine_tuned)
