"""Text to what a text encoder reads: the one implementation, in the Transform graph (so the
Trainer's input and both serving signatures run the same ops).

Core TensorFlow ops only, so no process that loads the graph needs tensorflow-text.
"""

from __future__ import annotations

import tensorflow as tf

# Punctuation becomes its own token: "great!" and "great" share the word.
_PUNCTUATION = r"([^\w\s'])"


def normalize(texts: tf.Tensor, lowercase: bool) -> tf.Tensor:
    """tf.string [batch] -> the same texts, whitespace collapsed and, optionally, lower-cased
    (Unicode-aware)."""
    texts = tf.strings.strip(tf.strings.regex_replace(texts, r"\s+", " "))
    return tf.strings.lower(texts, encoding="utf-8") if lowercase else texts


def words_and_pairs(texts: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tokens: the words (punctuation split off), then the
    adjacent word pairs ("not good"), which carry much of a short text's meaning."""
    words = tf.strings.split(tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 "))
    return tf.concat([words, tf.strings.ngrams(words, 2, separator=" ")], axis=1)


def pad_ids(ids: tf.RaggedTensor, max_tokens: int) -> tf.Tensor:
    """Ragged vocabulary ids (0-based) -> int64 [batch, max_tokens]: id + 1, 0 = padding."""
    return (ids[:, :max_tokens] + 1).to_tensor(default_value=0, shape=[None, max_tokens])
