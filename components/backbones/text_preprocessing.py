"""Text to what a text encoder reads: the one implementation, in the Transform graph (so the
Trainer's input and both serving signatures run the same ops).

Unicode NFC normalisation and a BERT preprocessing model's WordPiece are tensorflow-text ops:
every process that loads a text model's graph imports tensorflow_text first, or loading fails
with "Op type not registered" (tensorflow/transform#170); this module does, for Transform.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text

from components.backbones import registry

# Punctuation (anything but letters, numbers, "_", "'" and spaces, in any script: RE2's \w and
# \s are ASCII-only, so "déjà" would split) becomes its own token: "great!" shares "great".
_PUNCTUATION = r"([^\pL\pN_'\s])"
_SPACES = r"[\s\p{Z}]+"  # also no-break and other Unicode spaces


def normalize(texts: tf.Tensor, lowercase: bool) -> tf.Tensor:
    """tf.string [batch] -> the same texts in Unicode NFC (a composed and a decomposed "é" are
    one character), whitespace collapsed and, optionally, lower-cased (Unicode-aware)."""
    texts = tensorflow_text.normalize_utf8(texts, "NFC")
    texts = tf.strings.strip(tf.strings.regex_replace(texts, _SPACES, " "))
    return tf.strings.lower(texts, encoding="utf-8") if lowercase else texts


def words_and_pairs(texts: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tokens: the words (punctuation split off), then the
    adjacent word pairs ("not good"), which carry much of a short text's meaning."""
    words = tf.strings.split(tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 "))
    return tf.concat([words, tf.strings.ngrams(words, 2, separator=" ")], axis=1)


def pad_ids(ids: tf.RaggedTensor, max_tokens: int) -> tf.Tensor:
    """Ragged vocabulary ids (0-based) -> int64 [batch, max_tokens]: id + 1, 0 = padding."""
    return (ids[:, :max_tokens] + 1).to_tensor(default_value=0, shape=[None, max_tokens])


def bert_token_ids(texts: tf.Tensor, preprocessor_handle: str, max_tokens: int) -> tf.Tensor:
    """tf.string [batch] -> int64 [batch, max_tokens]: the TF Hub preprocessing model's own
    tokenization and packing ([CLS] text [SEP], truncated, 0-padded) at `max_tokens`, through its
    `tokenize` and `bert_pack_inputs` (TF Hub's API for a sequence length other than its 128).
    Transform saves the model's graph and vocabulary into its own output: serving needs no handle."""
    preprocessor = registry.load_hub_model(preprocessor_handle)
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(texts)], tf.constant(max_tokens))
    return tf.ensure_shape(tf.cast(packed["input_word_ids"], tf.int64), [None, max_tokens])
