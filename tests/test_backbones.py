import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from components.backbones import registry as backbones
from components.trainer.model import apply_stage, backbone_of, build_model
from components.trainer.stages import Stage
from tests.conftest import REPO, export_tiny_hub_feature_vector, tiny_trainer_settings

KERAS_ENTRIES = [n for n in backbones.names() if backbones.get(n).kind == "image" and n != "hub"]


# One architecture per Keras family builds in the suite (the family's code paths: blocks,
# preprocessing); the registry's recorded sizes of the others are Keras constants, checked by
# `make test-registry` (2 minutes on 2 cores) when the Keras pin changes.
_FAMILIES: dict = {}
for _name in KERAS_ENTRIES:
    _FAMILIES.setdefault(backbones.get(_name).family, []).append(_name)
FAMILY_REPRESENTATIVES = {min(names, key=lambda n: backbones.get(n).params) for names in _FAMILIES.values()}
EXPECTED = {
    "vgg16",
    "vgg19",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet50_v2",
    "inception_v3",
    "inception_resnet_v2",
    "xception",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "densenet121",
    "densenet169",
    "densenet201",
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_v2_{v}" for v in ("b0", "b1", "b2", "b3", "s")),
    "nasnet_mobile",
    "nasnet_large",
    "convnext_tiny",
    "hub",
    "hub_text",
    "hub_bert",
    "text_scratch",
    "text_tfidf",
}


def test_registry_offers_every_classic_backbone():
    assert set(backbones.names()) == EXPECTED


def test_input_sizes_and_modes():
    assert backbones.get("inception_v3").default_size == 299
    assert backbones.get("xception").default_size == 299
    assert backbones.get("nasnet_large").default_size == 331
    assert [backbones.get(f"efficientnet_b{i}").default_size for i in range(8)] == [
        224,
        240,
        260,
        300,
        380,
        456,
        528,
        600,
    ]
    modes = {n: backbones.get(n).preprocess for n in backbones.names()}
    assert modes["resnet50"] == modes["vgg16"] == "caffe"
    assert modes["densenet121"] == "torch"
    assert modes["mobilenet_v2"] == modes["inception_v3"] == "tf"
    assert modes["efficientnet_b0"] == modes["efficientnet_v2_s"] == modes["convnext_tiny"] == "none"
    assert modes["mobilenet_v3_small"] == "none"


def test_nasnet_imagenet_size_is_enforced():
    assert "only 331 px" in backbones.get("nasnet_large").check_size(224, "imagenet")
    assert backbones.get("nasnet_large").check_size(224, "none") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n if n in FAMILY_REPRESENTATIVES else pytest.param(n, marks=pytest.mark.registry) for n in KERAS_ENTRIES]
)
def test_builds_runs_and_matches_registry(name):
    entry = backbones.get(name)
    size = max(entry.min_size, 32)
    model = backbones.build(entry, size, "none")
    assert model.count_params() == entry.params
    assert sum(1 for layer in model.layers if layer.weights) == entry.weighted_layers
    out = model(tf.zeros([1, size, size, 3]), training=False)
    assert out.shape[0] == 1 and out.shape[-1] > 0
    assert len(backbones.blocks(entry, model)) >= 5


def test_unknown_backbone_suggests_closest():
    with pytest.raises(backbones.UnknownBackboneError, match="Did you mean: resnet50"):
        backbones.get("resnet_50")


@pytest.mark.slow
def test_graft_backbones_table_and_json():
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    table = subprocess.run([graft, "backbones"], capture_output=True, text=True, cwd=REPO)
    assert table.returncode == 0
    assert "inception_v3" in table.stdout and "299" in table.stdout and "23,587,712" in table.stdout
    rows = json.loads(subprocess.run([graft, "backbones", "--json"], capture_output=True, text=True, cwd=REPO).stdout)
    assert {r["name"] for r in rows} == EXPECTED
    assert {"name", "kind", "input_size", "preprocessing", "parameters"} <= set(rows[0])
    assert {r["name"]: r["kind"] for r in rows if r["kind"] == "text"} == {
        "hub_text": "text",
        "hub_bert": "text",
        "text_scratch": "text",
        "text_tfidf": "text",
    }


def test_hub_feature_vector_from_local_savedmodel(tmp_path):
    handle = export_tiny_hub_feature_vector(str(tmp_path / "fv"))
    model = build_model(tiny_trainer_settings(backbone="hub", weights=handle), 3)
    assert model(tf.zeros([2, 32, 32, 3])).shape == (2, 3)
    apply_stage(model, Stage("head", 1, "none", 1e-3))
    assert {v.name.split("/")[0] for v in model.trainable_variables} == {"probabilities"}
    apply_stage(model, Stage("all", 1, "all", 1e-4))
    assert len(model.trainable_variables) == 3  # hub kernel + head kernel and bias
    assert backbone_of(model).trainable


def test_unreachable_hub_url_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("TFHUB_CACHE_DIR", "/nonexistent-cache")
    with pytest.raises(backbones.WeightsUnavailableError, match="pass the local directory instead"):
        backbones.build(
            backbones.get("hub"), 32, "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
        )


def test_unreachable_bert_preprocessor_is_a_config_error_naming_the_option(monkeypatch, tmp_path):
    from pipeline import preflight
    from pipeline.config import ConfigError, GraftConfig

    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("TFHUB_CACHE_DIR", "/nonexistent-cache")
    config = GraftConfig(
        text_data=str(tmp_path),
        backbone="hub_bert",
        weights=str(tmp_path),
        text_preprocessor="https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3",
    )
    with pytest.raises(
        ConfigError, match=r"^--text-preprocessor: cannot load TF Hub handle https://tfhub.dev/.*\n.*Offline"
    ):
        preflight.check_weights(config)
