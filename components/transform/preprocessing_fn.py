"""Transform's preprocessing_fn: a thin adapter over the backbones' preprocessing.

Images: `preprocess_image_bytes`. Transform runs with materialize=False: decoded float images
would be ~34x the encoded bytes on disk. Texts: normalised strings for a TF Hub sentence
encoder; for a BERT-family encoder, its preprocessing model's token ids; for text_scratch and
text_tfidf the vocabulary, computed here over the training data, and each text as padded token
ids (text_scratch) or its TF-IDF vector (text_tfidf, the document frequencies computed here too). The Trainer applies this same graph inside its input pipeline, and
the serving signatures embed it, so there is exactly one preprocessing graph.
"""

import tensorflow as tf
import tensorflow_transform as tft

from components.backbones import registry, text_preprocessing
from components.backbones.preprocessing import preprocess_image_bytes
from components.contract import IMAGE_KEY, LABEL_KEY, TEXT_KEY
from components.transform.settings import TransformSettings

VOCABULARY = "text_vocabulary"


def preprocessing_fn(inputs, custom_config):
    settings = TransformSettings.from_dict(custom_config)
    if registry.get(settings.backbone).kind == "text":
        outputs = {TEXT_KEY: text_features(tf.reshape(inputs[TEXT_KEY], [-1]), settings)}
    else:
        # The limit is in the graph: serving refuses an image declaring more pixels before decoding it.
        outputs = {
            IMAGE_KEY: preprocess_image_bytes(
                inputs[IMAGE_KEY], settings.backbone, settings.image_size, settings.max_image_pixels
            )
        }
    if LABEL_KEY in inputs:
        outputs[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs


def text_features(texts: tf.Tensor, settings: TransformSettings) -> tf.Tensor:
    texts = text_preprocessing.model_text(texts, settings.lowercase, settings.max_text_chars)
    if settings.backbone == registry.HUB_BERT.name:
        return text_preprocessing.bert_token_ids(texts, settings.text_preprocessor, settings.max_tokens)
    if settings.backbone not in registry.LEARNED_TEXT:
        return texts  # a sentence encoder reads the strings
    tokens = text_preprocessing.words_and_pairs(texts)
    ids = tft.compute_and_apply_vocabulary(
        tokens,
        top_k=settings.vocab_size,
        frequency_threshold=2,
        num_oov_buckets=1,
        vocab_filename=VOCABULARY,
    )
    if settings.backbone == registry.TEXT_TFIDF.name:
        return tfidf_vectors(ids, settings.vocab_size + 1)
    return text_preprocessing.pad_ids(ids, settings.max_tokens)


def tfidf_vectors(ids: tf.RaggedTensor, size: int) -> tf.Tensor:
    """Vocabulary ids [batch, None] -> float32 [batch, size]: each token's sublinear term
    frequency (1 + log count) times its inverse document frequency over the training data
    (TFT's idf: log((1 + n) / (1 + df)) + 1, as scikit-learn's smooth idf), L2-normalised per
    text; a text without tokens is the zero vector. Every token counts, not only the first
    max_tokens."""
    sparse = ids.to_sparse()
    idf = tft.experimental.idf(sparse, size)  # one value per token, in the same order
    cells = sparse.indices[:, 0] * size + sparse.values  # (text, term) as one index
    total = tf.cast(ids.nrows(), tf.int64) * size
    counts = tf.math.unsorted_segment_sum(tf.ones_like(idf.values), cells, total)
    idfs = tf.math.unsorted_segment_max(idf.values, cells, total)  # empty cells: -inf, masked below
    weights = tf.where(counts > 0, (1.0 + tf.math.log(tf.maximum(counts, 1.0))) * idfs, 0.0)
    return tf.math.l2_normalize(tf.reshape(weights, [-1, size]), axis=1)
