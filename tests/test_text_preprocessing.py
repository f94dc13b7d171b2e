"""Text to what an encoder reads: tokens, and what a model answers for texts with none."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.backbones import text_preprocessing
from components.trainer.model import build_model
from tests.conftest import tiny_trainer_settings


def _tokens(texts):
    return [[t.decode() for t in row] for row in text_preprocessing.words_and_pairs(tf.constant(texts)).to_list()]


def test_each_word_is_followed_by_the_pair_it_starts():
    assert _tokens(["not good, at all", "one", "", "   "]) == [
        ["not", "not good", "good", "good ,", ",", ", at", "at", "at all", "all"],
        ["one"],
        [],
        [],
    ]


def test_a_text_cut_at_max_tokens_keeps_the_pairs_of_the_words_it_keeps():
    words = " ".join(f"w{i}" for i in range(100))
    ids = text_preprocessing.words_and_pairs(tf.constant([words]))
    kept = [t.decode() for t in ids[:, :8].to_list()[0]]
    assert kept == ["w0", "w0 w1", "w1", "w1 w2", "w2", "w2 w3", "w3", "w3 w4"]


def test_text_scratch_answers_a_text_without_tokens_with_probabilities_not_nan():
    """An empty or whitespace-only text has no token ids (all padding): the average over no
    tokens is the zero vector, not 0/0."""
    settings = tiny_trainer_settings(
        backbone="text_scratch", data_dir=None, text_data="t.csv", vocab_size=20, max_tokens=6, embedding_dim=4
    )
    keras.utils.set_random_seed(0)
    model = build_model(settings, 3)
    ids = np.array([[0] * 6, [3, 4, 0, 0, 0, 0]], np.int64)
    probabilities = model(ids, training=False).numpy()
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1.0)
    # The tokens' average, padding left out.
    embedding = model.get_layer("backbone").get_layer("embedding").embeddings.numpy()
    features = model.get_layer("backbone")(ids).numpy()
    np.testing.assert_allclose(features[0], 0.0)
    np.testing.assert_allclose(features[1], embedding[[3, 4]].mean(axis=0), rtol=1e-6)
