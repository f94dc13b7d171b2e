"""A second reference: fastai's `fine_tune` recipe, written in plain Keras.

fastai's `Learner.fine_tune(epochs, base_lr=2e-3)`: one epoch with the body frozen, the head at
base_lr on a one-cycle schedule (pct_start 0.99); then the whole model unfrozen for `epochs`
epochs, one-cycle (pct_start 0.3, div 5) at half the rate with discriminative rates from
rate/100 (the first layers) up to rate (the last). Adam, BatchNorm left in inference mode as the
Keras guides do. Used by bench_trainer.py on the same images and weights as Graft.
"""

import math
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine up from peak/div to peak over pct_start of the steps, then cosine down to peak/(div*1e4)."""

    def __init__(self, peak, steps, pct_start, div=25.0, final_div=1e4):
        self.peak, self.steps, self.pct_start, self.div, self.final_div = peak, steps, pct_start, div, final_div

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        up = max(1.0, self.pct_start * self.steps)
        start, end = self.peak / self.div, self.peak / (self.div * self.final_div)

        def cosine(a, b, fraction):
            return b + (a - b) * (1 + tf.cos(math.pi * tf.clip_by_value(fraction, 0.0, 1.0))) / 2

        return tf.where(
            step < up,
            cosine(start, self.peak, step / up),
            cosine(self.peak, end, (step - up) / max(1.0, self.steps - up)),
        )


def _discriminative_step(model, base, optimizer, low_fraction):
    """A train step whose gradients for the backbone's layers are scaled from low_fraction (first
    layer) to 1 (last), geometrically: Adam's steps do not scale with the gradient, so each layer
    gets its own optimizer instead (the same schedule, scaled)."""
    layers = [layer for layer in base.layers if layer.trainable_weights]
    multipliers = {}
    for depth, layer in enumerate(layers):
        for weight in layer.trainable_weights:
            multipliers[weight.ref()] = low_fraction ** (1 - depth / max(1, len(layers) - 1))
    groups = {}
    for weight in model.trainable_weights:
        groups.setdefault(round(multipliers.get(weight.ref(), 1.0), 6), []).append(weight)
    optimizers = {m: optimizer(m) for m in groups}
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        by_ref = {w.ref(): g for w, g in zip(model.trainable_weights, grads)}
        for m, weights in groups.items():
            optimizers[m].apply_gradients([(by_ref[w.ref()], w) for w in weights])
        return loss

    return step


def run(train_dir, eval_dir, image_size, batch_size, epochs, weights_file, alpha=1.0, base_lr=2e-3, seed=42):
    keras.utils.set_random_seed(seed)
    common = dict(image_size=(image_size, image_size), batch_size=batch_size, seed=seed)
    train = keras.utils.image_dataset_from_directory(train_dir, shuffle=True, **common)
    val = keras.utils.image_dataset_from_directory(eval_dir, shuffle=False, **common)
    classes = len(train.class_names)
    preprocess = keras.applications.mobilenet_v2.preprocess_input
    train = train.map(lambda x, y: (preprocess(x), y)).cache().prefetch(tf.data.AUTOTUNE)
    val = val.map(lambda x, y: (preprocess(x), y)).prefetch(tf.data.AUTOTUNE)
    steps = sum(1 for _ in train)

    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=None
    )
    base.load_weights(weights_file)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    outputs = keras.layers.Dense(classes, activation="softmax")(keras.layers.Dropout(0.2)(x))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(OneCycle(base_lr, steps, 0.99)), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    started = time.time()
    model.fit(train, epochs=1, verbose=0)  # freeze_epochs=1
    frozen_seconds = time.time() - started

    base.trainable = True
    rate = base_lr / 2
    schedule_steps = steps * epochs

    def optimizer(multiplier):
        return keras.optimizers.Adam(OneCycle(rate * multiplier, schedule_steps, 0.3, div=5.0))

    step = _discriminative_step(model, base, optimizer, 1 / 100)
    started = time.time()
    for _ in range(epochs):
        for images, labels in train:
            step(images, labels)
    fine_tune_seconds = time.time() - started
    predictions = np.concatenate([model.predict(x, verbose=0).argmax(1) for x, _ in val])
    labels = np.concatenate([y.numpy() for _, y in val])
    return {
        "frozen_seconds": frozen_seconds,
        "fine_tune_seconds": fine_tune_seconds,
        "eval_accuracy": float(np.mean(predictions == labels)),
    }
