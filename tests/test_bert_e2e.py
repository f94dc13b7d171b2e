"""The BERT family through the same DAG: a BERT-style preprocessing model and encoder in TF
Hub's format (tests/bert_hub.py), the encoder pretrained here on one corpus, fine-tuned through
the pipeline on review sentences about other movies; the tokenization in Transform is the
preprocessing model's own; `trainable: N` counts transformer blocks."""

import csv
import glob
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the graphs below hold its ops)
import tf_keras as keras

from components.backbones import bert_encoder
from components.trainer.model import apply_stage, build_model
from components.trainer.optimizers import discriminative_multipliers, variable_key
from components.trainer.stages import Stage
from tests.bert_hub import pretrain_bert
from tests.conftest import run_graft, tiny_trainer_settings
from tests.test_text_e2e import _full_corpus, assert_text_signatures_agree, config, sample_rows

pytestmark = pytest.mark.slow  # every test here trains or exports a model

MAX_TOKENS = 48
CONCURRENT_CALLS = """
import random, sys, threading
import tensorflow as tf, tensorflow_text
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_text"]
words = "a good bad film plot actors dull moving story great".split()
def calls(seed):
    rng = random.Random(seed)
    for _ in range(50):
        texts = [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(rng.randint(1, 64))]
        serve(text=tf.constant(texts))
threads = [threading.Thread(target=calls, args=(i,)) for i in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("200 calls")
"""


@pytest.fixture(scope="module")
def bert_pair(tmp_path_factory):
    """A pair pretrained on 4,000 sentences of the larger corpus about movies the small task
    does not have."""
    small_movies = {r["movie_name"] for r in sample_rows(1200)}
    rows = [r for r in _full_corpus() if r["movie_name"] not in small_movies]
    random.Random(0).shuffle(rows)
    rows = rows[:4000]
    pair = pretrain_bert(
        str(tmp_path_factory.mktemp("bert")), [r["text"] for r in rows], [int(r["category"] == "fresh") for r in rows]
    )
    assert pair["accuracy"] > 0.75
    return pair


def test_trainable_n_counts_transformer_blocks(bert_pair):
    """trainable: 1 trains the top block and the pooler, not the lower block or the
    embeddings; one training step moves exactly those."""
    settings = tiny_trainer_settings(
        backbone="hub_bert",
        weights=bert_pair["encoder"],
        max_tokens=MAX_TOKENS,
        data_dir=None,
        text_data=".",
        backbone_kwargs={},
    )
    model = build_model(settings, 2)
    encoder = bert_encoder.encoder_layer(model.get_layer("backbone"))
    assert encoder.block_count == 2 and not encoder.trainable_weights  # frozen at first

    apply_stage(model, Stage("top", 1, 1, 1e-3))
    names = [w.name for w in model.trainable_weights]
    assert any(n.startswith("transformer/layer_1/") for n in names)
    assert not any(n.startswith(("transformer/layer_0/", "word_embeddings", "embeddings/")) for n in names)
    assert any(n.startswith("pooler_transform/") for n in names)

    before = {w.name: w.numpy().copy() for w in encoder.weights}
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    ids = np.zeros((4, MAX_TOKENS), np.int64)
    ids[:, :5] = [2, 40, 41, 42, 3]
    model.fit(ids, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    moved = {w.name for w in encoder.weights if not np.array_equal(before[w.name], w.numpy())}
    assert moved and all(n.startswith(("transformer/layer_1/", "pooler_transform/")) for n in moved), moved

    apply_stage(model, Stage("all", 1, "all", 1e-3))
    assert len(model.trainable_weights) == len(encoder.weights) + 2  # every encoder variable and the head
    # Discriminative rates decay by block (one Keras layer holds them all): embeddings lowest.
    rates = discriminative_multipliers(model, 0.1)
    by_name = {w.name: rates[variable_key(w)] for w in encoder.trainable_weights}
    assert by_name["word_embeddings/embeddings:0"] == pytest.approx(0.1)
    layer_0 = by_name["transformer/layer_0/intermediate/kernel:0"]
    layer_1 = by_name["transformer/layer_1/intermediate/kernel:0"]
    assert 0.1 < layer_0 < layer_1 < by_name["pooler_transform/kernel:0"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="layer_0, layer_1"):
        apply_stage(model, Stage("from", 1, "from:layer_5", 1e-3))


def test_a_stage_the_encoder_cannot_do_fails_before_the_run(tmp_path, bert_pair):
    """The encoder's blocks are known once it loads: the pre-flight refuses such a stage
    (graft run exits 2) instead of the Trainer failing after ExampleGen and Transform."""
    from pipeline import preflight
    from pipeline.config import ConfigError, GraftConfig

    def bert_config(trainable):
        stage = {"name": "deep", "epochs": 1, "trainable": trainable, "learning_rate": 1e-4}
        return GraftConfig(
            text_data=str(tmp_path),
            backbone="hub_bert",
            weights=bert_pair["encoder"],
            text_preprocessor=bert_pair["preprocessor"],
            stages=[stage],
        )

    with pytest.raises(ConfigError, match=r"stages: stage 'deep': .*the encoder's blocks are layer_0, layer_1"):
        preflight.check_weights(bert_config("from:layer_7"))
    preflight.check_weights(bert_config(2))  # the top 2 blocks: fine


@pytest.mark.e2e
def test_bert_family_end_to_end(tmp_path, bert_pair):
    import tensorflow_transform as tft

    rows = sample_rows(1200)
    table = str(tmp_path / "reviews.csv")
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows([r["text"], r["category"]] for r in rows)
    # The handles are copied: after the run they are deleted, and serving must not need them.
    preprocessor = shutil.copytree(bert_pair["preprocessor"], str(tmp_path / "handles" / "preprocess"))
    encoder = shutil.copytree(bert_pair["encoder"], str(tmp_path / "handles" / "encoder"))
    stages = [
        {"name": "head", "epochs": 10, "trainable": "none", "learning_rate": 0.01},
        {"name": "top_block", "epochs": 2, "trainable": 1, "learning_rate": 0.0003},
    ]
    settings = dict(
        backbone="hub_bert",
        weights=encoder,
        text_preprocessor=preprocessor,
        max_tokens=MAX_TOKENS,
        lowercase=False,
        stages=stages,
        min_accuracy=0.6,
    )
    summary, output = run_graft(tmp_path, config(tmp_path, "bert", table, **settings), "bert")
    accuracy = summary["metrics"]["sparse_categorical_accuracy"]
    print(
        f"\nhub_bert (pretrained on other movies) on {summary['metrics']['example_count']} eval sentences: {accuracy:.3f}"
    )
    assert summary["blessed"] and summary["pushed_model_dir"] and accuracy >= 0.6  # chance: 0.5
    assert [row["stage"] for row in summary["training_history"]][-1] == "top_block"
    shutil.rmtree(tmp_path / "handles")

    # Served as a server does, from several threads at once, in a process with the pipeline's
    # runtime environment (oneDNN off): before it, 6 of 6 such processes crashed.
    from pipeline.config import GraftConfig

    runtime_env = GraftConfig(text_data=table, backbone="hub_bert").runtime_env
    assert runtime_env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    served = subprocess.run(
        [sys.executable, "-c", CONCURRENT_CALLS, summary["pushed_model_dir"]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **runtime_env},
    )
    assert served.returncode == 0 and "200 calls" in served.stdout, served.stderr[-2000:]

    # Transform's token ids are the preprocessing model's own (bert_pack_inputs at max_tokens),
    # after NFC: a decomposed "é" tokenizes as the composed one.
    texts = ["A gorgeous, moving film -- truly!", "Cafe\u0301 society is dull.", "Café society is dull."]
    [graph_dir] = glob.glob(str(tmp_path / "bert" / "root" / "Transform" / "transform_graph" / "*"))
    ids = tft.TFTransformOutput(graph_dir).transform_features_layer()({"text": tf.constant([[t] for t in texts])})
    ids = ids["text"].numpy()
    reference = tf.saved_model.load(bert_pair["preprocessor"])
    packed = reference.bert_pack_inputs(
        [reference.tokenize(tf.constant(texts[:1] + texts[2:]))], tf.constant(MAX_TOKENS)
    )
    expected = packed["input_word_ids"].numpy()
    np.testing.assert_array_equal(ids[[0, 2]], expected)
    np.testing.assert_array_equal(ids[1], ids[2])

    # Both signatures agree; graft predict (a fresh process) answers as serving_text does.
    by_text = assert_text_signatures_agree(summary["pushed_model_dir"], texts, atol=1e-5)
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    predicted = subprocess.run(
        [graft, "predict", "--serving-dir", str(tmp_path / "bert" / "serving"), "-"],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr
    answers = [json.loads(line)["class_name"] for line in predicted.stdout.splitlines()]
    assert answers == [n.decode() for n in by_text["class_name"].numpy()]


@pytest.mark.parametrize("backbone", ["hub_bert", "text_scratch"])
def test_mixed_precision_model_exports_a_float32_twin_after_a_partial_stage(bert_pair, backbone):
    """Trained under mixed_float16 (here on the CPU), stopped in a stage that trains part of the
    encoder: the served float32 twin holds the trained weights (matched by name: the encoder
    lists its weights by what trains) and answers as the trained model does."""
    from components.trainer.export import float32_twin

    hub = backbone == "hub_bert"
    settings = tiny_trainer_settings(
        backbone=backbone,
        weights=bert_pair["encoder"] if hub else "none",
        max_tokens=MAX_TOKENS,
        data_dir=None,
        text_data=".",
        backbone_kwargs={},
        vocab_size=3000,
        mixed_precision="mixed_float16",
    )
    ids = np.zeros((8, MAX_TOKENS), np.int64)
    ids[:, :6] = np.random.default_rng(0).integers(5, 900, (8, 6))
    ids[:, 0], ids[:, 5] = 2, 3
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = build_model(settings, 2)
        apply_stage(model, Stage("top", 1, 1, 1e-3) if hub else Stage("all", 1, "all", 1e-3))
        model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
        model.fit(ids, np.arange(8) % 2, epochs=2, verbose=0)
        assert model.get_layer("probabilities").kernel.dtype == tf.float32 and model.compute_dtype == "float16"
        twin = float32_twin(model, settings, 2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert twin is not model and twin.compute_dtype == "float32"
    trained = {w.name: w.numpy() for w in model.weights}
    assert {w.name for w in twin.weights} == set(trained)
    for weight in twin.weights:
        np.testing.assert_array_equal(weight.numpy(), trained[weight.name])
    np.testing.assert_allclose(twin(ids).numpy(), model(ids).numpy().astype(np.float32), atol=2e-2)


def test_embeddings_train_only_with_trainable_all(tmp_path):
    """Every form that names blocks (a count at or above the encoder's, top:1.0, from:layer_0)
    trains the blocks and what sits above them (the pooler, a pre-norm encoder's final layer
    norm), never the embeddings; `all` trains everything. Discriminative rates put a final layer
    norm with the pooler, at the top."""
    texts = ["a good film", "a bad film", "dull plot", "great actors"] * 4
    pair = pretrain_bert(str(tmp_path / "bert"), texts, [0, 1, 1, 0] * 4, epochs=0, final_layer_norm=True)
    settings = tiny_trainer_settings(
        backbone="hub_bert", weights=pair["encoder"], max_tokens=16, data_dir=None, text_data=".", backbone_kwargs={}
    )
    model = build_model(settings, 2)
    encoder = bert_encoder.encoder_layer(model.get_layer("backbone"))
    embeddings = {w.name for w in encoder.weights if "embedding" in w.name}
    assert embeddings >= {"word_embeddings/embeddings:0", "embeddings/layer_norm/gamma:0"}
    for trainable in (2, 5, "top:1.0", "from:layer_0"):
        apply_stage(model, Stage("s", 1, trainable, 1e-3))
        names = {w.name for w in encoder.trainable_weights}
        assert not names & embeddings, trainable
        assert {"final_layer_norm/gamma:0", "pooler_transform/kernel:0"} <= names, trainable
        assert any(n.startswith("transformer/layer_0/") for n in names), trainable
    apply_stage(model, Stage("s", 1, 1, 1e-3))
    names = {w.name for w in encoder.trainable_weights}
    assert "final_layer_norm/gamma:0" in names and not any(n.startswith("transformer/layer_0/") for n in names)
    apply_stage(model, Stage("s", 1, "all", 1e-3))
    assert {w.name for w in encoder.trainable_weights} == {w.name for w in encoder.weights}
    rates = discriminative_multipliers(model, 0.1)
    by_name = {w.name: rates[variable_key(w)] for w in encoder.trainable_weights}
    assert by_name["final_layer_norm/gamma:0"] == pytest.approx(1.0) == by_name["pooler_transform/kernel:0"]
    assert by_name["embeddings/layer_norm/gamma:0"] == pytest.approx(0.1)


def test_an_encoder_without_pooled_output_is_named_as_such_not_as_offline(tmp_path):
    from components.backbones import registry

    class NoPooled(tf.Module):
        @tf.function(
            input_signature=[
                {
                    k: tf.TensorSpec([None, None], tf.int32, k)
                    for k in ("input_word_ids", "input_mask", "input_type_ids")
                }
            ]
        )
        def __call__(self, inputs):
            return {"sequence_output": tf.cast(inputs["input_word_ids"], tf.float32)[..., None]}

    path = str(tmp_path / "no_pooled")
    tf.saved_model.save(NoPooled(), path)
    with pytest.raises(registry.WeightsUnavailableError) as info:
        registry.build_text_encoder(registry.HUB_BERT, path, 8, 10, 4)
    assert "returns sequence_output, no pooled_output" in str(info.value)
    assert "cannot load" not in str(info.value) and "Offline" not in str(info.value)


def test_per_block_discriminative_rates_as_the_optimizer_applies_them(bert_pair):
    """discriminative_lr on a BERT encoder, measured on what one Adam step moved: each variable
    moves its block's multiplier times what it moves without the option (the word embeddings,
    whose gradient is sparse, at the lowest rate; the pooler at the full one)."""
    from components.trainer.optimizers import compile_for_stage

    settings = tiny_trainer_settings(
        backbone="hub_bert",
        weights=bert_pair["encoder"],
        max_tokens=16,
        data_dir=None,
        text_data=".",
        backbone_kwargs={},
    )
    stage = Stage("all", 1, "all", 1e-3)
    ids = np.zeros((8, 16), np.int64)
    ids[:, :6] = np.random.default_rng(1).integers(5, 900, (8, 6))
    ids, labels = tf.constant(ids), tf.constant(np.arange(8) % 2)
    moved, multipliers = [], None
    for discriminative in (0.0, 0.1):
        keras.utils.set_random_seed(0)
        model = build_model(settings, 2)
        apply_stage(model, stage)
        compile_for_stage(model, stage, discriminative_lr=discriminative)
        multipliers = multipliers or discriminative_multipliers(model, 0.1)
        before = {v.name: v.numpy().copy() for v in model.trainable_variables}
        with tf.GradientTape() as tape:
            loss = model.compiled_loss(labels, model(ids, training=True))
        model.optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        moved.append({v.name: (v.numpy() - before[v.name], variable_key(v)) for v in model.trainable_variables})
    plain, scaled = moved
    checked = set()
    for name, (step, key) in plain.items():
        if np.abs(step).max() < 1e-7:
            continue  # no gradient reached it in this batch
        np.testing.assert_allclose(scaled[name][0], multipliers.get(key, 1.0) * step, rtol=2e-3, atol=1e-9)
        checked.add(name)
    assert {
        "word_embeddings/embeddings:0",
        "transformer/layer_0/intermediate/kernel:0",
        "pooler_transform/kernel:0",
    } <= checked
