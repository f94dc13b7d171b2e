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


def model_text(texts: tf.Tensor, lowercase: bool, max_chars: int) -> tf.Tensor:
    """tf.string [batch] -> what the model reads of each text: its first `max_chars` characters
    (the `max_text_chars` rule: ingestion cuts there too), normalised. The one definition, used
    by Transform (so by training and both serving signatures) and by ingestion, whose split and
    duplicate check are keyed on it: texts the model cannot tell apart never sit in both splits."""
    return normalize(tf.strings.substr(texts, 0, max_chars, unit="UTF8_CHAR"), lowercase)


def model_texts(texts: list[str], lowercase: bool, max_chars: int, chunk: int = 10_000) -> list[str]:
    """`model_text` for Python strings (ingestion), run eagerly in chunks."""
    out = []
    for start in range(0, len(texts), chunk):
        values = model_text(tf.constant(texts[start : start + chunk], tf.string), lowercase, max_chars)
        out += [v.decode("utf-8") for v in values.numpy().tolist()]
    return out


def words_and_pairs(texts: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tokens: each word (punctuation split off) followed by the pair
    it starts ("not", "not good", "good", ...): adjacent pairs carry much of a short text's
    meaning, and interleaved, a text cut at `max_tokens` keeps the pairs of the words it keeps."""
    words = tf.strings.split(tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 "))
    flat = words.flat_values
    following = tf.concat([flat[1:], [""]], axis=0)
    last_of_its_text = tf.equal(
        tf.range(tf.size(flat, out_type=tf.int64)) + 1, tf.gather(words.row_limits(), words.value_rowids())
    )
    pairs = tf.where(last_of_its_text, "", tf.strings.join([flat, following], separator=" "))
    # Word, pair, word, pair, ...; the last word of a text starts no pair (an empty slot, dropped).
    tokens = tf.RaggedTensor.from_row_splits(tf.reshape(tf.stack([flat, pairs], axis=1), [-1]), words.row_splits * 2)
    return tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)


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
