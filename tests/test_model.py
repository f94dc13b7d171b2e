import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.backbones import registry as backbones
from components.trainer.model import apply_stage, backbone_of, build_model
from components.trainer.optimizers import compile_for_stage
from components.trainer.stages import Stage
from components.trainer.training import TrainingOptions, train_stages
from tests.conftest import tiny_trainer_settings
from tests.memory import peak_mb, reset_peak

OPTIONS = TrainingOptions(tiny_trainer_settings())


def _tiny_model(**kwargs):
    return build_model(tiny_trainer_settings(**kwargs), 3)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _bn_moving_stats(model):
    return [v.numpy().copy() for v in backbone_of(model).variables if "moving_" in v.name]


def test_head_stage_trains_only_the_head_and_bn_statistics_stay():
    model = _tiny_model()
    stage = Stage("head", 1, "none", 1e-3)
    apply_stage(model, stage)
    assert {v.name.split("/")[0] for v in model.trainable_variables} == {"probabilities"}
    before_bn = _bn_moving_stats(model)
    before_backbone = [v.numpy().copy() for v in backbone_of(model).weights]
    train_stages(model, [stage], _data(), _data(seed=1), OPTIONS)
    for a, b in zip(before_bn, _bn_moving_stats(model)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before_backbone, backbone_of(model).weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_top_n_stage_unfreezes_exactly_the_top_layers():
    model = _tiny_model()
    apply_stage(model, Stage("ft", 1, 5, 1e-4))
    base = backbone_of(model)
    assert [layer.trainable for layer in base.layers[-5:]] == [True] * 5
    assert not any(layer.trainable for layer in base.layers[:-5])
    trainable_layers = {v.name.split("/")[0] for v in base.trainable_variables}
    assert trainable_layers <= {layer.name for layer in base.layers[-5:]}
    assert trainable_layers


@pytest.mark.slow
def test_bn_stays_in_inference_mode_when_unfrozen_by_default():
    model = _tiny_model()
    before = _bn_moving_stats(model)
    train_stages(model, [Stage("all", 1, "all", 1e-3)], _data(), _data(seed=1), OPTIONS)
    for a, b in zip(before, _bn_moving_stats(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_train_batchnorm_option_updates_statistics():
    model = _tiny_model(train_batchnorm=True, batchnorm_momentum=0.9)
    before = _bn_moving_stats(model)
    train_stages(model, [Stage("all", 1, "all", 1e-3)], _data(), _data(seed=1), OPTIONS)
    assert any(not np.array_equal(a, b) for a, b in zip(before, _bn_moving_stats(model)))


def test_fresh_optimizer_each_stage():
    model = _tiny_model()
    compile_for_stage(model, Stage("a", 1, "none", 1e-3))
    first = model.optimizer
    compile_for_stage(model, Stage("b", 1, "all", 1e-5))
    assert model.optimizer is not first
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)


def test_weights_file_is_loaded(tmp_path):
    entry = backbones.get("mobilenet_v2")
    source = backbones.build(entry, 32, "none", alpha=0.35)
    path = str(tmp_path / "w.h5")
    source.save_weights(path)
    loaded = backbones.build(entry, 32, path, alpha=0.35)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_of_another_architecture_is_a_clear_error(tmp_path):
    other = backbones.build(backbones.get("efficientnet_b0"), 32, "none")
    path = str(tmp_path / "other.h5")
    other.save_weights(path)
    with pytest.raises(
        backbones.WeightsUnavailableError, match="cannot load weights file .*other.h5 into mobilenet_v2"
    ):
        backbones.build(backbones.get("mobilenet_v2"), 32, path, alpha=0.35)


class _Killed(Exception):
    pass


class _KillAtEpoch(keras.callbacks.Callback):
    def __init__(self, stage_marker, epoch):
        super().__init__()
        self.stage_marker, self.epoch = stage_marker, epoch

    def on_epoch_begin(self, epoch, logs=None):
        names = [layer.name for layer in self.model.layers]  # the head alone while features are cached
        if "backbone" in names and self.model.get_layer("backbone").trainable and epoch == self.epoch:
            raise _Killed()


@pytest.mark.slow
def test_interrupted_training_resumes_from_last_completed_epoch(tmp_path):
    stages = [Stage("head", 1, "none", 1e-3), Stage("all", 3, "all", 1e-4)]
    backup = str(tmp_path / "backup")
    model = _tiny_model()
    with pytest.raises(_Killed):
        train_stages(
            model, stages, _data(), _data(seed=1), OPTIONS, callbacks=[_KillAtEpoch("all", 2)], backup_dir=backup
        )
    weights_at_kill = [w.numpy().copy() for w in model.weights]

    fresh = _tiny_model()  # a new process: nothing in memory
    history = train_stages(fresh, stages, _data(), _data(seed=1), OPTIONS, backup_dir=backup)
    assert [(r["stage"], r["epoch"]) for r in history] == [("head", 1), ("all", 3)]
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(weights_at_kill, fresh.weights))


def test_batchnorm_recalibration_makes_moving_statistics_the_training_average():
    from components.trainer.training import recalibrate_batchnorm

    model = _tiny_model(backbone="mobilenet_v2", train_batchnorm=True)  # its first layers by name
    base = backbone_of(model)
    first_bn = base.get_layer("bn_Conv1")
    data = _data(64)
    every = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert recalibrate_batchnorm(model, data, every) == 4
    conv = base.get_layer("Conv1")
    outputs = np.concatenate([conv(images).numpy() for images, _ in data])  # what bn_Conv1 sees
    np.testing.assert_allclose(first_bn.moving_mean.numpy(), outputs.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    # per-batch variances averaged (each batch has 16 images of the same distribution)
    batch_variances = [conv(images).numpy().var(axis=(0, 1, 2)) for images, _ in data]
    np.testing.assert_allclose(first_bn.moving_variance.numpy(), np.mean(batch_variances, axis=0), rtol=2e-2)
    assert first_bn.momentum == 0.9  # restored (from scratch: 0.9)
    assert not base.trainable and not first_bn.trainable  # restored


@pytest.mark.slow
def test_batchnorm_reestimation_leaves_frozen_layers_and_reads_unaugmented_batches():
    """Only the BatchNorm layers that trained in the stage are re-estimated (frozen pretrained
    layers keep their statistics), over the training batches without augmentation."""
    from components.trainer.training import recalibrate_batchnorm

    keras.utils.set_random_seed(1)
    # MobileNetV2: its top layers' variances are not 0 (conftest.SLIM_KWARGS)
    model = _tiny_model(backbone="mobilenet_v2", train_batchnorm=True, batchnorm_momentum=0.9)
    base = backbone_of(model)
    plain = _data(64)
    augmented = plain.map(lambda x, y: (x * 3.0 + 1.0, y))  # a stand-in for augmentation that moves statistics
    frozen_before = {v.name: v.numpy().copy() for v in base.variables if "moving_" in v.name}
    settings = tiny_trainer_settings(backbone="mobilenet_v2", train_batchnorm=True, batchnorm_momentum=0.9)
    options = TrainingOptions(settings, augmented=True, plain_train_ds=plain)
    stage = Stage("top", 1, 20, 1e-3)
    train_stages(model, [stage], augmented, None, options)
    trained = [layer for layer in base.layers[-20:] if isinstance(layer, keras.layers.BatchNormalization)]
    frozen = [layer for layer in base.layers[:-20] if isinstance(layer, keras.layers.BatchNormalization)]
    assert trained and frozen
    for layer in frozen:
        np.testing.assert_array_equal(layer.moving_mean.numpy(), frozen_before[layer.moving_mean.name])
        np.testing.assert_array_equal(layer.moving_variance.numpy(), frozen_before[layer.moving_variance.name])
    # The trained layers' statistics are those of the plain batches: re-estimating them there again
    # changes nothing; over the augmented batches it would.
    after = [layer.moving_variance.numpy().copy() for layer in trained]
    recalibrate_batchnorm(model, plain, trained)
    for layer, variance in zip(trained, after):
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-9)
    recalibrate_batchnorm(model, augmented, trained)
    ratio = [float(layer.moving_variance.numpy().sum() / variance.sum()) for layer, variance in zip(trained, after)]
    assert max(ratio) > 2, ratio  # pixels x3: variances several times larger


def test_cached_features_are_held_once_and_give_every_example_once_per_epoch():
    """A frozen stage's features, cached: the slices-plus-shuffle-buffer version held them about
    four times at its peak (+821 MB for 200 MB here; 1.2 GB beside 0.3 GB of features at 57,000
    images in make bench-scale); now about twice, while they are joined."""
    from components.trainer.training import cached_features

    width, count, batch = 4096, 12_800, 64  # 200 MB of float32 features
    inputs = keras.Input([1])
    tile = keras.Model(inputs, keras.layers.Lambda(lambda x: tf.tile(x, [1, width]))(inputs))
    images = tf.data.Dataset.range(count).batch(batch).map(lambda i: (tf.cast(i, tf.float32)[:, None], i % 7))
    features_mb = count * width * 4 / 2**20
    before = reset_peak()
    cached = cached_features(tile, images, batch, shuffle_seed=0, limit_bytes=1 << 30)
    epochs = [[(x[:, 0].numpy().astype(int), y.numpy()) for x, y in cached] for _ in range(2)]
    grown = peak_mb() - before
    print(f"peak +{grown:.0f} MB for {features_mb:.0f} MB of features")
    assert grown < 3 * features_mb, f"peak +{grown:.0f} MB for {features_mb:.0f} MB of features"
    orders = []
    for epoch in epochs:
        ids = np.concatenate([ids for ids, _ in epoch])
        labels = np.concatenate([labels for _, labels in epoch])
        assert sorted(ids) == list(range(count))  # every example once
        assert (labels == ids % 7).all()  # each with its own label
        orders.append(ids)
    assert (orders[0] != orders[1]).any() and (orders[0] != np.arange(count)).any()  # shuffled, anew each epoch
    in_order = np.concatenate([x[:, 0].numpy() for x, _ in cached_features(tile, images, batch, None, 1 << 30)])
    assert (in_order == np.arange(count)).all()  # validation: no shuffle


def test_a_frozen_stage_computes_its_features_from_the_batches_in_order_when_given():
    """Images beyond the image cache are not cached, and the shuffled training batches hold a
    shuffle buffer of decoded images (1 GB at 64,000 images in make bench-scale): a frozen
    stage's feature pass, which needs no order, reads the plain batches instead."""
    keras.utils.set_random_seed(1)
    model = _tiny_model(allow_frozen_random_backbone=True)
    plain = _data(64)

    def fail(x, y):
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(tf.size(y), -1), ["shuffled batches read"])]):
            return tf.identity(x), y

    never_read = plain.map(fail)
    settings = tiny_trainer_settings(allow_frozen_random_backbone=True)
    options = TrainingOptions(settings, plain_train_ds=plain)
    head_before = [w.copy() for w in model.layers[-1].get_weights()]
    train_stages(model, [Stage("head", 2, "none", 1e-2)], never_read, None, options)
    assert any((a != b).any() for a, b in zip(model.layers[-1].get_weights(), head_before))  # the head trained


@pytest.mark.slow
def test_a_model_rebuilt_for_trained_weights_computes_what_the_trained_one_did(tmp_path, monkeypatch):
    """The float32 twin and a warm start build the model again and copy weights in. EfficientNet
    with ImageNet weights has a rescaling layer that Keras leaves out without them: the copy
    must keep it (before: the rebuilt model answered other outputs from the same weights)."""
    from tf_keras.src.applications import efficientnet

    from components.trainer.export import copy_weights
    from components.trainer.model import architecture_only

    # The ImageNet file cannot be downloaded here: Keras is handed one made for the architecture.
    weights_file = str(tmp_path / "efficientnetb0_notop.h5")
    backbones.build(backbones.get("efficientnet_b0"), 32, "none").save_weights(weights_file)
    monkeypatch.setattr(efficientnet.data_utils, "get_file", lambda *args, **kwargs: weights_file)
    settings = tiny_trainer_settings(backbone="efficientnet_b0", weights="imagenet", backbone_kwargs={})
    trained = build_model(settings, 3)
    rng = np.random.default_rng(1)
    for weight in trained.weights:  # as if trained: no value the rebuilt model starts with
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype.as_numpy_dtype))
    rebuilt = build_model(architecture_only(settings), 3)
    copy_weights(trained, rebuilt)
    for a, b in zip(trained.weights, rebuilt.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    layers = [[type(layer).__name__ for layer in backbone_of(m).layers] for m in (trained, rebuilt)]
    assert layers[1] == layers[0]
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    stems = [
        keras.Model(backbone_of(m).input, backbone_of(m).get_layer("stem_activation").output)
        for m in (trained, rebuilt)
    ]
    np.testing.assert_allclose(stems[1](images).numpy(), stems[0](images).numpy(), atol=1e-4)
    np.testing.assert_allclose(rebuilt(images).numpy(), trained(images).numpy(), atol=1e-5)


@pytest.mark.parametrize("with_provenance", [True, False])
def test_a_served_model_of_another_architecture_is_refused_in_words(tmp_path, with_provenance):
    """init_from serving onto other backbone_kwargs: the option is named from the served
    provenance; a version without one is still refused by Graft, not with TensorFlow's error."""
    import json

    from components.trainer import warm_start

    served_settings = tiny_trainer_settings(backbone="mobilenet_v2")  # alpha 0.35
    version = tmp_path / "serving" / "1"
    build_model(served_settings, 3).save_weights(str(version / "variables" / "variables"))
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    if with_provenance:
        (version / "provenance.json").write_text(json.dumps({"config": {"backbone_kwargs": {"alpha": 0.35}}}))
    settings = tiny_trainer_settings(backbone="mobilenet_v2", backbone_kwargs={"alpha": 0.5})
    expected = "backbone_kwargs: {'alpha': 0.35} there, {'alpha': 0.5} here" if with_provenance else "do not fit"
    with pytest.raises(warm_start.WarmStartError, match=re.escape(expected)):
        warm_start.load_serving_weights(build_model(settings, 3), str(version), ["a", "b", "c"], settings)
    # The same architecture loads, every variable equal to the served one.
    model = build_model(served_settings, 3)
    warm_start.load_serving_weights(model, str(version), ["a", "b", "c"], served_settings)
    served = build_model(served_settings, 3)
    served.load_weights(str(version / "variables" / "variables")).expect_partial()
    for a, b in zip(model.weights, served.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_served_efficientnet_with_imagenet_weights_is_not_continued_without_them(tmp_path):
    """Keras builds EfficientNet with a rescaling layer only for ImageNet weights: every variable
    of the served model would load into a model without it, which then computes other features."""
    import json

    from components.trainer import warm_start

    version = tmp_path / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "assets.extra" / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    served = {"backbone": "efficientnet_b0", "backbone_kwargs": {}, "weights": "imagenet"}
    (version / "provenance.json").write_text(json.dumps({"config": served}))
    settings = tiny_trainer_settings(backbone="efficientnet_b0", backbone_kwargs={}, weights="none")
    with pytest.raises(warm_start.WarmStartError, match=re.escape("weights: 'imagenet' there, 'none' here")):
        warm_start.load_serving_weights(None, str(version), ["a", "b", "c"], settings)
