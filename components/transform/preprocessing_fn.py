"""Transform's preprocessing_fn: a thin adapter over the backbones' preprocessing.

Images: `preprocess_image_bytes`. Transform runs with materialize=False: decoded float images
would be ~34x the encoded bytes on disk. Texts: normalised strings for a TF Hub sentence
encoder; for a BERT-family encoder, its preprocessing model's token ids; for text_scratch the
vocabulary, computed here over the training data, and each text as padded token ids. The Trainer applies this same graph inside its input pipeline, and
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
        outputs = {IMAGE_KEY: preprocess_image_bytes(inputs[IMAGE_KEY], settings.backbone, settings.image_size)}
    if LABEL_KEY in inputs:
        outputs[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs


def text_features(texts: tf.Tensor, settings: TransformSettings) -> tf.Tensor:
    texts = text_preprocessing.model_text(texts, settings.lowercase, settings.max_text_chars)
    if settings.backbone == registry.HUB_BERT.name:
        return text_preprocessing.bert_token_ids(texts, settings.text_preprocessor, settings.max_tokens)
    if settings.backbone != registry.TEXT_SCRATCH.name:
        return texts  # a sentence encoder reads the strings
    tokens = text_preprocessing.words_and_pairs(texts)
    ids = tft.compute_and_apply_vocabulary(
        tokens,
        top_k=settings.vocab_size,
        frequency_threshold=2,
        num_oov_buckets=1,
        vocab_filename=VOCABULARY,
    )
    return text_preprocessing.pad_ids(ids, settings.max_tokens)
