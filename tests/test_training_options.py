"""Stages, schedules and training options on a tiny model: what trains, at which rate, and
that the feature-cached frozen stage trains the grafted model's own head."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.backbones import registry as backbones
from components.trainer import augmentation
from components.trainer.model import apply_stage, backbone_of, build_model
from components.trainer.optimizers import make_loss
from components.trainer.schedules import make_schedule
from components.trainer.stages import Stage, resolve_stages
from components.trainer.training import TrainingOptions, balanced_class_weights, split_at_pool, train_stages
from pipeline.config import ConfigError, GraftConfig, load_config
from tests.conftest import tiny_trainer_settings

MOBILENET = backbones.get("mobilenet_v2")


def _model(backbone: str = "mobilenet"):
    return build_model(tiny_trainer_settings(backbone=backbone), 3)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return tf.data.Dataset.from_tensor_slices(
        (rng.uniform(-1, 1, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 3, n))
    ).batch(16)


def test_presets():
    config = GraftConfig(data_dir=".", epochs=2, fine_tune_epochs=1, learning_rate=1e-3, fine_tune_learning_rate=1e-4)
    assert [s.trainable for s in resolve_stages(GraftConfig(data_dir=".", stages="frozen"))] == ["none"]
    progressive = resolve_stages(GraftConfig(**{**config.__dict__, "stages": "progressive"}))
    assert [s.trainable for s in progressive] == ["none", "top:0.25", "top:0.5"]
    rates = [s.learning_rate for s in progressive]
    assert rates == sorted(rates, reverse=True) and rates[0] / rates[1] >= 10
    assert [s.trainable for s in resolve_stages(GraftConfig(data_dir=".", stages="full"))] == ["all"]


def test_trainable_fraction_and_block():
    model = _model("mobilenet_v2")  # MobileNetV2's named blocks
    base = backbone_of(model)
    apply_stage(model, Stage("q", 1, "top:0.25", 1e-3))
    assert sum(layer.trainable for layer in base.layers) == round(0.25 * len(base.layers))
    apply_stage(model, Stage("b", 1, "from:block_15", 1e-3), MOBILENET)
    trainable = [layer.name for layer in base.layers if layer.trainable]
    assert trainable[0].startswith("block_15_") and "block_14_project" not in trainable
    assert trainable[-1] == base.layers[-1].name
    with pytest.raises(ValueError, match="no block 'block_99'.*block_1, block_2"):
        apply_stage(model, Stage("x", 1, "from:block_99", 1e-3), MOBILENET)


def test_schedules_follow_their_formula():
    assert make_schedule({"type": "constant"}, 0.01, 10, 3) == 0.01
    exponential = make_schedule({"type": "exponential", "decay_steps": 10, "decay_rate": 0.5}, 0.01, 10, 3)
    assert float(exponential(20)) == pytest.approx(0.0025)
    cosine = make_schedule({"type": "cosine", "warmup_epochs": 1}, 0.01, 10, 3)
    assert float(cosine(0)) == pytest.approx(0.0) and float(cosine(5)) == pytest.approx(0.005)
    assert float(cosine(10)) == pytest.approx(0.01) and float(cosine(30)) == pytest.approx(0.0, abs=1e-6)
    cycle = make_schedule(
        {"type": "one_cycle", "pct_start": 0.3, "div_factor": 10, "final_div_factor": 100}, 0.01, 10, 1
    )
    values = [float(cycle(s)) for s in range(10)]
    assert values[0] == pytest.approx(0.001) and max(values) == pytest.approx(0.01, rel=1e-3)
    assert values.index(max(values)) == 3 and values[-1] < values[0]


def test_learning_rate_follows_the_schedule_during_training():
    model = _model()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            optimizer = self.model.optimizer
            seen.append(float(optimizer.learning_rate(optimizer.iterations)))

    stage = Stage("head", 2, "none", 0.01, schedule={"type": "exponential", "decay_steps": 1, "decay_rate": 0.5})
    train_stages(
        model,
        [stage],
        _data(),
        _data(seed=1),
        callbacks=[Record()],
        options=TrainingOptions(tiny_trainer_settings(feature_caching=False), steps_per_epoch=4),
    )
    assert seen == pytest.approx([0.01 * 0.5**i for i in range(8)])


def test_feature_cached_head_is_the_grafted_models_head():
    model = _model("mobilenet_v2")  # features that differ between images (conftest.SLIM_KWARGS)
    before_backbone = [w.numpy().copy() for w in backbone_of(model).weights]
    before_head = model.get_layer("probabilities").kernel.numpy().copy()
    history = train_stages(
        model,
        [Stage("head", 3, "none", 0.01)],
        _data(),
        _data(seed=1),
        options=TrainingOptions(tiny_trainer_settings(backbone="mobilenet_v2", feature_caching=True)),
    )
    assert len(history) == 3
    assert not np.allclose(before_head, model.get_layer("probabilities").kernel.numpy())
    for a, b in zip(before_backbone, backbone_of(model).weights):
        np.testing.assert_array_equal(a, b.numpy())
    features, head = split_at_pool(model)
    images = next(iter(_data()))[0]
    np.testing.assert_allclose(
        head(features(images, training=False), training=False).numpy(), model(images, training=False).numpy(), atol=1e-6
    )


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch():
    # Seeded: unseeded, the initial weights depended on which tests ran before in the worker,
    # and one draw kept improving a little for all 15 epochs (seen once in CI).
    keras.utils.set_random_seed(0)
    model = _model()
    stage = Stage("all", 15, "all", 0.05)
    weights_after = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after.append([w.copy() for w in self.model.get_weights()])

    history = train_stages(
        model,
        [stage],
        _data(seed=3),
        _data(seed=4),
        callbacks=[Record()],
        options=TrainingOptions(tiny_trainer_settings(early_stopping_patience=1, feature_caching=False)),
    )
    assert len(history) < 15  # random labels: validation loss stops improving quickly
    losses = [row["val_loss"] for row in history]
    best = losses.index(min(losses))
    assert best < len(history) - 1  # the last epoch was worse ...
    for kept, at_best in zip(model.get_weights(), weights_after[best]):  # ... and the best epoch's weights are kept
        np.testing.assert_array_equal(kept, at_best)


def test_label_smoothing_and_class_weights():
    y_true = tf.constant([0, 1])
    y_pred = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    assert float(make_loss(2, 0.0)(y_true, y_pred)) == pytest.approx(0.0, abs=1e-6)
    assert float(make_loss(2, 0.2)(y_true, y_pred)) > 1.0
    assert balanced_class_weights({0: 30, 1: 10}) == pytest.approx({0: 40 / 60, 1: 2.0})


def test_augmentation_presets_train_only():
    assert augmentation.build(augmentation.resolve("none")) is None
    standard = augmentation.build(augmentation.resolve("standard"), seed=1)
    assert [type(layer).__name__ for layer in standard.layers] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RangeKeepingContrast",
    ]
    images = tf.random.stateless_uniform([4, 32, 32, 3], seed=[1, 2])
    assert not np.allclose(standard(images, training=True).numpy(), images.numpy())
    np.testing.assert_array_equal(standard(images, training=False).numpy(), images.numpy())
    assert "augmentation" not in [layer.name for layer in _model().layers]  # never in the served model
    with pytest.raises(ConfigError, match="rotation needs a factor"):
        augmentation.resolve([{"type": "rotation"}])


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch", "unit", "none"])
def test_augmentation_keeps_each_preprocessing_modes_value_range(mode):
    """Augmentation sees normalised batches: it must change them without clipping them to the
    [0, 255] that tf_keras' RandomContrast assumes (which zeroed every negative value)."""
    from components.backbones.preprocessing import scale_pixels

    pixels = tf.random.stateless_uniform([8, 16, 16, 3], seed=[3, 4], maxval=255.0)
    images = scale_pixels(pixels, mode)
    for preset in ("standard", [{"type": "contrast", "factor": 0.5}]):
        augment = augmentation.build(augmentation.resolve(preset), seed=2)
        out = augment(images, training=True).numpy()
        assert not np.allclose(out, images.numpy())
        low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
        span = high - low
        if low < 0:
            assert out.min() < -0.25 * abs(low), (mode, preset, out.min())  # not clipped at 0
        assert low - span <= out.min() and out.max() <= high + span  # stays on the same scale
        assert np.isclose(out.mean(), images.numpy().mean(), atol=0.15 * span)


def test_training_options_are_validated(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(
            None,
            {
                "data_dir": str(tmp_path),
                "augmentation": "heavy",
                "label_smoothing": 1.5,
                "stages": [
                    {"epochs": 1, "trainable": "top:2"},
                    {"epochs": 1, "schedule": {"type": "cosine", "warmup": 1}},
                ],
            },
        )
    message = str(info.value)
    assert "augmentation: unknown preset 'heavy'" in message
    assert "label_smoothing must be in [0, 1)" in message
    assert "stages[0].trainable must be" in message


def test_discriminative_learning_rates_scale_each_layers_step():
    from components.trainer.optimizers import compile_for_stage

    model = _model()
    stage = Stage("all", 1, "all", 0.01, optimizer="sgd")
    apply_stage(model, stage)
    compile_for_stage(model, stage, discriminative_lr=0.1)
    base = backbone_of(model)
    layers = [layer for layer in base.layers if layer.trainable and layer.trainable_weights]
    deepest, top = layers[0].trainable_weights[0], layers[-1].trainable_weights[0]
    head = model.get_layer("probabilities").kernel
    before = {id(v): v.numpy().copy() for v in (deepest, top, head)}
    images, labels = next(iter(_data()))
    with tf.GradientTape() as tape:
        loss = model.compiled_loss(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    grad = {v.ref(): g for g, v in zip(grads, model.trainable_variables)}
    for variable, multiplier in ((deepest, 0.1), (top, 1.0), (head, 1.0)):
        step = variable.numpy() - before[id(variable)]
        np.testing.assert_allclose(step, -0.01 * multiplier * grad[variable.ref()].numpy(), rtol=1e-3, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["frozen", "two_stage", "progressive", "full"])
def test_each_preset_trains(preset):
    config = GraftConfig(
        data_dir=".",
        stages=preset,
        epochs=1,
        fine_tune_epochs=1,
        fine_tune_layers=10,
        min_head_steps=0,
        min_fine_tune_steps=0,
        learning_rate=1e-3,
    )
    stages = resolve_stages(config)
    history = train_stages(
        _model(),
        stages,
        _data(32),
        _data(16, seed=1),
        options=TrainingOptions(tiny_trainer_settings(), steps_per_epoch=2),
    )
    assert [row["stage"] for row in history] == [s.name for s in stages]
    assert all(np.isfinite(row["loss"]) for row in history)
    assert all(row["stage_seconds"] > 0 for row in history)


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "constant"},
        {"type": "exponential", "decay_steps": 1, "decay_rate": 0.9},
        {"type": "cosine", "warmup_epochs": 1},
        {"type": "one_cycle"},
    ],
)
def test_each_schedule_trains(schedule):
    stage = Stage("s", 2, 5, 1e-3, optimizer="sgd", schedule=schedule)
    history = train_stages(
        _model(),
        [stage],
        _data(32),
        _data(16, seed=1),
        options=TrainingOptions(tiny_trainer_settings(), steps_per_epoch=2),
    )
    assert len(history) == 2 and all(np.isfinite(row["loss"]) for row in history)


def test_unknown_block_is_refused_before_the_pipeline(tmp_path):
    from pipeline import preflight

    def config(block):
        return GraftConfig(
            data_dir=str(tmp_path), weights="none", image_size=32, stages=[{"epochs": 1, "trainable": f"from:{block}"}]
        )

    with pytest.raises(ConfigError, match="mobilenet_v2 has no block\\(s\\) block_77; its blocks: block_1, block_2"):
        preflight.check_blocks(config("block_77"))
    preflight.check_blocks(config("block_13"))


def test_feature_caching_with_a_hub_backbone(tmp_path):
    from tests.conftest import export_tiny_hub_feature_vector

    handle = export_tiny_hub_feature_vector(str(tmp_path / "fv"))
    settings = tiny_trainer_settings(backbone="hub", weights=handle, feature_caching=True)
    model = build_model(settings, 3)
    train_stages(model, [Stage("head", 2, "none", 0.01)], _data(), _data(seed=1), options=TrainingOptions(settings))
    features, head = split_at_pool(model)
    images = next(iter(_data()))[0]
    np.testing.assert_allclose(head(features(images)).numpy(), model(images).numpy(), atol=1e-6)


def test_validation_is_carved_by_what_an_example_holds_not_where_it_is_read(tmp_path):
    """The validation part is a property of each example (a hash of its image or text), so the
    Trainer's datasets and label_counts (which read the shards differently: interleaved one per
    core, and in sequence) carve the same part, whatever the order or the node's core count."""
    from components.trainer.input_pipeline import carve, label_counts, take_part

    texts = [f"text number {i}" for i in range(2000)]
    examples = tf.data.Dataset.from_tensor_slices(
        {"text": [[t] for t in texts], "label": [[i % 4] for i in range(2000)]}
    )

    def part(dataset, validation):
        return {
            row["text"][0].decode() for row in take_part(dataset, carve(10, validation, "text")).as_numpy_iterator()
        }

    validation, train = part(examples, True), part(examples, False)
    assert not validation & train and len(validation | train) == 2000
    assert 150 < len(validation) < 250  # 10 % of 2,000, give or take the hash
    assert part(examples.shuffle(2000, seed=1), True) == validation  # another read order: the same part
    # label_counts, reading the records from files in another order, counts the same part.
    for shard, rows in enumerate((texts[1::2], texts[::2])):
        with tf.io.TFRecordWriter(str(tmp_path / f"s{shard}.gz"), "GZIP") as writer:
            for t in rows:
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()])),
                            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(t.split()[-1]) % 4])),
                        }
                    )
                )
                writer.write(example.SerializeToString())
    train_counts, validation_counts = label_counts([str(tmp_path / "*.gz")], "text", 10)
    assert sum(validation_counts.values()) == len(validation) and sum(train_counts.values()) == len(train)
    assert validation_counts == {c: sum(int(t.split()[-1]) % 4 == c for t in validation) for c in range(4)}
    assert carve(0, True, "text") is None


def test_frozen_stage_features_come_from_the_training_loop_not_a_tf_data_map(monkeypatch):
    """tf.data functions run on the host CPU: on a GPU node a backbone inside a map would compute
    every feature there. The cached features must be computed by the training loop."""
    from components.trainer import training

    graphs = []
    split = training.split_at_pool

    def recording_split(model):
        features, head = split(model)
        call = features.call

        def recorded(*args, **kwargs):
            graphs.append(tf.compat.v1.get_default_graph().name)
            return call(*args, **kwargs)

        monkeypatch.setattr(features, "call", recorded)
        return features, head

    monkeypatch.setattr(training, "split_at_pool", recording_split)
    train_stages(
        _model(),
        [Stage("head", 1, "none", 0.01)],
        _data(),
        _data(seed=1),
        options=TrainingOptions(tiny_trainer_settings(backbone="mobilenet_v2", feature_caching=True)),
    )
    assert graphs and not [g for g in graphs if "Dataset" in g], graphs


@pytest.mark.slow
def test_feature_cache_beyond_its_memory_bound_trains_through_the_backbone(caplog):
    import logging

    model = _model("mobilenet_v2")  # features that differ between images (conftest.SLIM_KWARGS)
    before_backbone = [w.numpy().copy() for w in backbone_of(model).weights]
    before_head = model.get_layer("probabilities").kernel.numpy().copy()
    with caplog.at_level(logging.INFO, logger="graft.trainer"):
        history = train_stages(
            model,
            [Stage("head", 2, "none", 0.01)],
            _data(),
            _data(seed=1),
            options=TrainingOptions(
                tiny_trainer_settings(backbone="mobilenet_v2", feature_caching=True, feature_cache_mb=0)
            ),
        )
    assert "would exceed feature_cache_mb=0; training through the frozen backbone" in caplog.text
    assert len(history) == 2
    assert not np.allclose(before_head, model.get_layer("probabilities").kernel.numpy())
    for a, b in zip(before_backbone, backbone_of(model).weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_shuffle_buffer_is_bounded_in_bytes():
    from components.trainer.input_pipeline import shuffle_buffer_size

    image_380px = 380 * 380 * 3 * 4
    assert shuffle_buffer_size(10_000, image_380px, 1024 << 20) == (1024 << 20) // image_380px  # 619, not 10,000
    assert shuffle_buffer_size(300, image_380px, 1024 << 20) == 300  # all fit
    assert shuffle_buffer_size(300, image_380px, 0) == 1


def test_text_default_fine_tunes_the_whole_encoder_after_a_warmup(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\na,x\nb,y\n")
    config = GraftConfig(text_data=str(table), backbone="hub_text", weights=str(tmp_path))
    head, fine_tune = config.stage_plan
    assert (head.trainable, fine_tune.trainable) == ("none", "all")
    # The head's rate from the range test, fine-tuning at a tenth of it.
    assert (head.learning_rate, fine_tune.learning_rate, fine_tune.rate_scale) == (None, None, 0.1)
    assert fine_tune.schedule == {"type": "cosine", "warmup_epochs": 1}
    scratch = GraftConfig(text_data=str(table), backbone="text_scratch", weights="none")
    assert [(s.trainable, s.learning_rate) for s in scratch.stage_plan] == [("all", None)]
    tfidf = GraftConfig(text_data=str(table), backbone="text_tfidf", weights="none")
    # Nothing below the head: a logistic regression, trained to its optimum (the rate decays to 0).
    assert [(s.trainable, s.min_steps, s.schedule) for s in tfidf.stage_plan] == [("none", 3000, {"type": "cosine"})]
    images = GraftConfig(data_dir=".", weights="imagenet").stage_plan
    assert [(s.trainable, s.learning_rate, s.rate_scale) for s in images] == [("none", None, 1.0), ("all", None, 0.1)]
    explicit = GraftConfig(data_dir=".", learning_rate=0.005).stage_plan
    assert [s.learning_rate for s in explicit] == [0.005, 0.0005]
    bert = GraftConfig(
        text_data=str(table), backbone="hub_bert", weights=str(tmp_path), text_preprocessor=str(tmp_path)
    )
    # The README's hub_bert `auto`: the head on the frozen encoder (its rate from the range test),
    # then the whole encoder at its authors' 3e-5, after a one-epoch warmup, with cosine decay.
    assert [(s.trainable, s.learning_rate, s.schedule) for s in bert.stage_plan] == [
        ("none", None, {"type": "constant"}),
        ("all", 3e-5, {"type": "cosine", "warmup_epochs": 1}),
    ]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_discriminative_rates_scale_what_the_optimizer_applies_to_embeddings_too(optimizer):
    """An embedding's gradient is sparse (IndexedSlices): its step must be scaled like a dense
    one. Two identical text_scratch models, one step each on the same batch: with
    discriminative_lr 0.1 the embedding (the deepest, and only, backbone layer) moves 0.1x what it
    moves without, the head 1x."""
    from components.trainer.optimizers import compile_for_stage

    settings = tiny_trainer_settings(
        backbone="text_scratch", data_dir=None, text_data="t.csv", vocab_size=40, max_tokens=8, embedding_dim=4
    )
    stage = Stage("all", 1, "all", 0.01, optimizer=optimizer)
    rng = np.random.default_rng(0)
    ids, labels = tf.constant(rng.integers(1, 42, (16, 8))), tf.constant(rng.integers(0, 3, 16))
    deltas = []
    for discriminative in (0.0, 0.1):
        keras.utils.set_random_seed(0)
        model = build_model(settings, 3)
        apply_stage(model, stage)
        compile_for_stage(model, stage, discriminative_lr=discriminative)
        before = {v.name: v.numpy().copy() for v in model.trainable_variables}
        with tf.GradientTape() as tape:
            loss = model.compiled_loss(labels, model(ids, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        assert any(isinstance(g, tf.IndexedSlices) for g in grads)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        deltas.append({v.name: v.numpy() - before[v.name] for v in model.trainable_variables})
    plain, scaled = deltas
    embedding = next(name for name in plain if "embedding" in name)
    assert np.abs(plain[embedding]).max() > 1e-4
    np.testing.assert_allclose(scaled[embedding], 0.1 * plain[embedding], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(scaled["probabilities/kernel:0"], plain["probabilities/kernel:0"], rtol=1e-5)


def test_a_tf_hub_model_trains_whole_or_not_at_all(tmp_path):
    """hub and hub_text wrap one TF Hub layer: a stage that unfreezes part of it (N, top:f,
    from:, the image two_stage preset's top layers) would silently train all of it. Such stages
    are refused before anything runs; the auto recipe fine-tunes the whole model after the head."""
    (tmp_path / "handle").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "t.csv").write_text("text,label\n")
    for backbone, data in (
        ("hub", {"data_dir": str(tmp_path / "images")}),
        ("hub_text", {"text_data": str(tmp_path / "t.csv")}),
    ):
        base = {**data, "backbone": backbone, "weights": str(tmp_path / "handle")}
        for trainable in (3, "top:0.5", "from:block_2"):
            stage = {"name": "part", "epochs": 1, "trainable": trainable}
            with pytest.raises(
                ConfigError,
                match=rf"stages: 'part' \({trainable}\) unfreeze part of the backbone, but a {backbone} backbone is one TF Hub layer",
            ):
                load_config(None, {**base, "stages": [stage]})
        with pytest.raises(ConfigError, match="'top_quarter' \\(top:0.25\\), 'top_half' \\(top:0.5\\)"):
            load_config(None, {**base, "stages": "progressive"})
        auto = load_config(None, base).stage_plan
        assert [(s.trainable, s.schedule["type"]) for s in auto] == [("none", "constant"), ("all", "cosine")]


@pytest.mark.slow
def test_range_test_finds_a_rate_that_trains_and_leaves_the_model_as_it_was():
    """The rate is found on the training data: the loss curve falls, then diverges; the pick is a
    decade below the lowest loss; the weights are restored. A head trained at the found rate for
    the same few steps learns more than at a rate 100x lower."""
    from components.trainer.rate_finder import find_rate

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 16))
    labels = rng.integers(0, 3, 256)
    features = (centres[labels] + rng.normal(0, 1, (256, 16))).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(32)
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    before = [w.copy() for w in head.get_weights()]
    search = find_rate(head, data)
    for a, b in zip(before, head.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Three sweeps (on cached features), each from the same weights, their curves averaged: the
    # first point of each is the untrained head's loss (rate 1e-5), so the average's is too.
    averaged = find_rate(head, data, sweeps=3)
    for a, b in zip(before, head.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert averaged.losses[0] == pytest.approx(search.losses[0], rel=0.3) and len(averaged.rates) <= 100
    lowest = search.rates[int(np.argmin(search.losses))]
    assert search.rate == pytest.approx(lowest / 10) and 1e-4 < search.rate < 1.0
    assert search.losses[int(np.argmin(search.losses))] < 0.5 * search.losses[0]  # the curve fell

    def loss_after(rate):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.legacy.Adam(rate), "sparse_categorical_crossentropy")
        return model.fit(data, epochs=2, verbose=0).history["loss"][-1]

    assert loss_after(search.rate) < 0.5 * loss_after(search.rate / 100)


@pytest.mark.slow
def test_stages_without_a_rate_take_the_range_tests_and_small_data_gets_more_steps():
    """The presets' head rate comes from the range test (run once, on the cached features), the
    fine-tuning stage at its fraction; each stage runs at least its min_steps; the choices are
    recorded for the run's output and summary."""
    model = _model()
    stages = [
        Stage("head", 2, "none", None, min_steps=20),
        Stage("fine_tune", 1, "all", None, rate_scale=0.1, min_steps=6),
    ]
    options = TrainingOptions(tiny_trainer_settings(), steps_per_epoch=4)
    history = train_stages(model, stages, _data(64), None, options)
    assert [row["stage"] for row in history] == ["head"] * 5 + ["fine_tune"] * 2  # 20 and 6 steps at 4 a epoch
    found = options.choices["rate_search"]["rate"]
    assert [(s["name"], s["epochs"], s["steps"]) for s in options.choices["stages"]] == [
        ("head", 5, 20),
        ("fine_tune", 2, 8),
    ]
    assert [s["learning_rate"] for s in options.choices["stages"]] == pytest.approx([found, min(found / 10, 1e-3)])


def test_a_minimum_in_steps_adds_at_most_300_epochs():
    """text_tfidf's 3,000 steps on 40 texts were 1,500 epochs (70 s of Keras' per-epoch cost on 2
    cores); the default head's 300 steps are never cut, even at one batch an epoch."""
    from components.trainer.training import planned

    assert planned(Stage("head", 5, "none", 0.01, min_steps=3000), 2, None).epochs == 300
    assert planned(Stage("head", 5, "none", 0.01, min_steps=300), 1, None).epochs == 300
    assert planned(Stage("head", 5, "none", 0.01, min_steps=3000), 110, None).epochs == 28  # the review sample


def test_no_validation_part_below_small_data():
    from components.trainer.input_pipeline import SMALL_DATA, validation_percent_for

    assert validation_percent_for(None, SMALL_DATA - 1) == 0 and validation_percent_for(None, SMALL_DATA) == 10
    assert validation_percent_for(25, 10) == 25 and validation_percent_for(0, 10**6) == 0


def test_a_fine_tuning_stage_takes_at_most_a_safe_rate_from_the_range_test():
    """A head tolerates the high rates a range test can pick; a tenth of them wrecked the
    pretrained backbone in the transfer test (0.005: validation 0.987 -> 0.38 in two epochs)."""
    from components.trainer.stages import MAX_DERIVED_FINE_TUNE_RATE
    from components.trainer.training import planned

    head = Stage("head", 5, "none", None)
    fine = Stage("fine_tune", 5, "all", None, rate_scale=0.1)
    assert planned(head, 10, 0.05).learning_rate == 0.05
    assert planned(fine, 10, 0.05).learning_rate == MAX_DERIVED_FINE_TUNE_RATE == 1e-3
    assert planned(fine, 10, 0.002).learning_rate == pytest.approx(2e-4)  # below the cap: a tenth
    assert planned(Stage("fine_tune", 5, "all", 0.01), 10, 0.05).learning_rate == 0.01  # explicit: as given
    scratch = Stage("scratch", 5, "all", None)  # from scratch every layer takes the found rate
    assert planned(scratch, 10, 0.05).learning_rate == 0.05


def test_a_stage_restored_after_an_interruption_does_not_hand_its_optimizer_to_the_next(tmp_path):
    """A run killed after its first stage restores that stage's weights; the next stage then
    steps at its own rate from step 0, not at the restored stage's (Keras restores a
    checkpoint's optimizer into the next one the model gets)."""
    backup = str(tmp_path / "backup")
    settings = tiny_trainer_settings(feature_caching=False)
    first = Stage("head", 1, "none", 0.01)
    second = Stage("fine_tune", 1, "all", 1e-4)
    options = TrainingOptions(settings, steps_per_epoch=4)
    train_stages(_model(), [first], _data(), None, options=options, backup_dir=backup)  # then killed

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((float(self.model.optimizer.learning_rate), int(self.model.optimizer.iterations)))

    model = _model()
    history = train_stages(
        model, [first, second], _data(), None, callbacks=[Record()], options=options, backup_dir=backup
    )
    assert [row["stage"] for row in history] == ["head", "fine_tune"]  # the head restored, not retrained
    assert seen == [(pytest.approx(1e-4), step) for step in range(4)]
