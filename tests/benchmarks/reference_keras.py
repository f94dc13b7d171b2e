"""The reference: transfer learning written the way the classic Keras guides teach it.

image_dataset_from_directory, the backbone's preprocess_input, a frozen backbone with a new
head trained by model.fit, then the top layers unfrozen and trained at a lower rate. Used by
bench_trainer.py with the same images, split, backbone weights, image size, batch size and
epochs as Graft.
"""

import time

import tensorflow as tf
import tf_keras as keras


def run(
    train_dir,
    eval_dir,
    image_size,
    batch_size,
    frozen_epochs,
    fine_tune_epochs,
    fine_tune_layers,
    weights_file,
    alpha=1.0,
    learning_rate=1e-3,
    seed=42,
):
    keras.utils.set_random_seed(seed)
    common = dict(image_size=(image_size, image_size), batch_size=batch_size, seed=seed)
    train = keras.utils.image_dataset_from_directory(train_dir, shuffle=True, **common)
    val = keras.utils.image_dataset_from_directory(eval_dir, shuffle=False, **common)
    classes = len(train.class_names)
    preprocess = keras.applications.mobilenet_v2.preprocess_input
    train = train.map(lambda x, y: (preprocess(x), y)).prefetch(tf.data.AUTOTUNE)
    val = val.map(lambda x, y: (preprocess(x), y)).prefetch(tf.data.AUTOTUNE)

    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=None
    )
    base.load_weights(weights_file)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(learning_rate), keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"]
    )
    started = time.time()
    model.fit(
        train, epochs=frozen_epochs, verbose=0
    )  # evaluated after, untimed: Graft's side has no per-epoch validation
    frozen_seconds = time.time() - started
    frozen_accuracy = model.evaluate(val, verbose=0)[1]

    base.trainable = True
    for layer in base.layers[:-fine_tune_layers]:
        layer.trainable = False
    model.compile(
        keras.optimizers.Adam(learning_rate / 10), keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"]
    )
    started = time.time()
    model.fit(train, epochs=fine_tune_epochs, verbose=0)
    fine_tune_seconds = time.time() - started
    images = sum(int(x.shape[0]) for x, _ in train)
    return {
        "frozen_seconds": frozen_seconds,
        "fine_tune_seconds": fine_tune_seconds,
        "train_images": images,
        "frozen_eval_accuracy": float(frozen_accuracy),
        "eval_accuracy": float(model.evaluate(val, verbose=0)[1]),
    }
