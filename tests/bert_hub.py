"""A tiny BERT-style pair in TF Hub's common text API, made here because TF Hub cannot be reached:
a preprocessing model (`__call__`, `tokenize`, `bert_pack_inputs`, WordPiece via tensorflow-text,
its vocabulary an asset) and a transformer encoder (a dict of input_word_ids / input_mask /
input_type_ids in; pooled_output, sequence_output, encoder_outputs out; variables named
`transformer/layer_<i>/...` as TF Hub's BERT encoders name them). Both are exported as
SavedModels that the pipeline loads by path exactly as it would load a downloaded handle.
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_text as text
import tf_keras as keras

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SEQ_LENGTH = 128  # the preprocessing model's own default, as TF Hub's


def write_vocabulary(path: str, texts: list, size: int = 3000) -> list:
    """A WordPiece vocabulary: the special tokens, the most frequent lower-cased words and
    punctuation, single letters and their '##' continuations (so every word tokenizes)."""
    counts = collections.Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    letters = sorted({c for w in counts for c in w})
    words = [w for w, _ in counts.most_common(size) if w not in letters]
    vocabulary = SPECIAL + letters + [f"##{c}" for c in letters] + words
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    return vocabulary


class Preprocessor(tf.Module):
    """TF Hub's BERT preprocessing interface over a WordPiece vocabulary file (lower-cased)."""

    def __init__(self, vocab_file: str):
        super().__init__()
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        vocabulary = open(vocab_file, encoding="utf-8").read().split()
        self._cls, self._sep = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.TextFileInitializer(
                self.vocab_file,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            num_oov_buckets=1,
        )
        self._tokenizer = text.BertTokenizer(table, lower_case=True, token_out_type=tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, texts):
        return self._tokenizer.tokenize(texts)  # [batch, words, wordpieces]

    @tf.function
    def bert_pack_inputs(self, segments, seq_length):
        segments = [s.merge_dims(-2, -1) if s.ragged_rank > 1 else s for s in segments]
        trimmed = text.RoundRobinTrimmer(max_seq_length=seq_length - 2).trim(segments)
        ids, type_ids = text.combine_segments(trimmed, self._cls, self._sep)
        word_ids, mask = text.pad_model_inputs(ids, max_seq_length=seq_length)
        type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=seq_length)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts):
        return self.bert_pack_inputs([self.tokenize(texts)], tf.constant(SEQ_LENGTH))


def export_preprocessor(path: str, vocab_file: str) -> str:
    module = Preprocessor(vocab_file)
    for rank in (1, 2):  # as TF Hub's: one segment, words or word pieces, any seq_length
        spec = tf.RaggedTensorSpec([None] * (rank + 1), tf.int32, ragged_rank=rank)
        module.bert_pack_inputs.get_concrete_function([spec], tf.TensorSpec([], tf.int32))
    tf.saved_model.save(module, path)
    return path


class TransformerBlock(keras.layers.Layer):
    """Self-attention and a feed-forward layer, each with a residual and layer norm."""

    def __init__(self, hidden: int, heads: int, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(heads, hidden // heads, name="self_attention")
        self.norm1 = keras.layers.LayerNormalization(name="attention_layer_norm")
        self.dense1 = keras.layers.Dense(hidden * 2, activation="gelu", name="intermediate")
        self.dense2 = keras.layers.Dense(hidden, name="output")
        self.norm2 = keras.layers.LayerNormalization(name="output_layer_norm")

    def call(self, x, mask):
        attention_mask = tf.cast(mask[:, None, :], tf.bool)
        x = self.norm1(x + self.attention(x, x, attention_mask=attention_mask))
        return self.norm2(x + self.dense2(self.dense1(x)))


def build_encoder(
    vocab_size: int, hidden: int = 32, blocks: int = 2, heads: int = 2, final_layer_norm: bool = False
) -> keras.Model:
    """A BERT-shaped encoder in Keras, variables named as TF Hub's BERT encoders'; with
    `final_layer_norm`, a layer norm after the last block (as pre-norm encoders have)."""
    names = ("input_word_ids", "input_mask", "input_type_ids")
    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in names}
    ids, mask = inputs["input_word_ids"], inputs["input_mask"]
    positions = keras.layers.Lambda(lambda t: tf.range(tf.shape(t)[1])[None, :])(ids)
    x = (
        keras.layers.Embedding(vocab_size + 1, hidden, name="word_embeddings")(ids)
        + keras.layers.Embedding(SEQ_LENGTH, hidden, name="position_embedding")(positions)
        + keras.layers.Embedding(2, hidden, name="type_embeddings")(inputs["input_type_ids"])
    )
    x = keras.layers.LayerNormalization(name="embeddings/layer_norm")(x)
    outputs = []
    for i in range(blocks):
        x = TransformerBlock(hidden, heads, name=f"transformer/layer_{i}")(x, mask)
        outputs.append(x)
    if final_layer_norm:
        x = keras.layers.LayerNormalization(name="final_layer_norm")(x)
    pooled = keras.layers.Dense(hidden, activation="tanh", name="pooler_transform")(x[:, 0])
    result = {"pooled_output": pooled, "sequence_output": x, "encoder_outputs": outputs, "default": pooled}
    return keras.Model(inputs, result, name="bert_encoder")


class ReusableEncoder(tf.__internal__.tracking.AutoTrackable):
    """The encoder as TF Hub's reusable SavedModel: `__call__(inputs, training)` traced for both
    values of `training`, `variables` and `trainable_variables`."""

    def __init__(self, encoder: keras.Model):
        self._encoder = encoder
        self.variables = list(encoder.variables)
        self.trainable_variables = list(encoder.trainable_variables)
        specs = {name: tf.TensorSpec([None, None], tf.int32, name) for name in encoder.input}
        for training in (False, True):
            self.__call__.get_concrete_function(specs, training)

    @tf.function
    def __call__(self, inputs, training=False):
        return self._encoder(inputs, training=training)


def pretrain_bert(
    directory: str, texts: list, labels: list, epochs: int = 3, blocks: int = 2, final_layer_norm: bool = False
) -> dict:
    """Makes the pair under `directory` (preprocess/, encoder/), the encoder trained with a
    throw-away head on one text task (epochs=0: untrained); returns the handles and accuracy."""
    keras.utils.set_random_seed(0)
    os.makedirs(directory, exist_ok=True)
    vocabulary = write_vocabulary(os.path.join(directory, "vocab.txt"), texts)
    preprocess = export_preprocessor(os.path.join(directory, "preprocess"), os.path.join(directory, "vocab.txt"))
    packed = tf.saved_model.load(preprocess)(tf.constant(texts))
    encoder = build_encoder(len(vocabulary), blocks=blocks, final_layer_norm=final_layer_norm)
    head = keras.layers.Dense(len(set(labels)), activation="softmax")(encoder(encoder.input)["pooled_output"])
    model = keras.Model(encoder.input, head)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    features = {k: v.numpy()[:, :48] for k, v in packed.items()}  # short sentences: 48 word pieces suffice
    history = model.fit(features, np.array(labels), batch_size=64, epochs=epochs, verbose=0).history if epochs else {}
    encoder_dir = os.path.join(directory, "encoder")
    tf.saved_model.save(ReusableEncoder(encoder), encoder_dir)
    return {"preprocessor": preprocess, "encoder": encoder_dir, "accuracy": (history.get("accuracy") or [0.0])[-1]}
