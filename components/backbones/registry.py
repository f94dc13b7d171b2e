"""The backbone registry: every pretrained backbone Graft offers, as data.

Adding a backbone is one `Backbone(...)` entry in `_REGISTRY`; preprocessing, model building,
validation and `graft backbones` all read from here.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import socket
from dataclasses import dataclass
from typing import Optional

# How pixels in [0, 255] become the backbone's input (names as in keras.applications):
#   caffe: RGB->BGR, minus the ImageNet channel means; tf: scaled to [-1, 1];
#   torch: [0, 1], then ImageNet mean/std; none: the model rescales inside; unit: [0, 1] (TF Hub).
PREPROCESS_MODES = ("caffe", "tf", "torch", "none", "unit")  # text encoders: "text"


@dataclass(frozen=True)
class Backbone:
    name: str
    keras_class: str  # attribute of keras.applications that builds it ("" for TF Hub)
    family: str  # keras.applications sub-module whose preprocess_input matches `preprocess`
    preprocess: str
    default_size: int
    min_size: int = 32
    params: int = 0  # parameters without the classification top (include_top=False)
    # Layer-name pattern whose first group names the natural fine-tuning block of a layer;
    # stages can unfreeze "from block X upward".
    block_pattern: str = ""
    imagenet_size_only: bool = False  # NASNet: ImageNet weights exist for default_size alone
    weighted_layers: int = 0  # layers holding weights: a weights file for another architecture differs
    # Keras builds another graph with weights='imagenet' (EfficientNet B0-B7 add a rescaling layer
    # then): a model built only to receive trained weights must be built with the same weights.
    imagenet_changes_architecture: bool = False
    kind: str = "image"  # image | text: what the backbone reads
    description: str = ""

    @property
    def is_hub(self) -> bool:
        """Built from a TF Hub handle (URL or local SavedModel directory) given as `weights`."""
        return self.name in HUB_NAMES

    def check_size(self, size: int, weights: str = "none") -> Optional[str]:
        """Why `size` cannot be this backbone's input size, or None when it can."""
        if size < self.min_size:
            return f"{self.name} needs images of at least {self.min_size} px (got {size})"
        if self.imagenet_size_only and weights == "imagenet" and size != self.default_size:
            return f"{self.name} with ImageNet weights takes only {self.default_size} px images (got {size})"
        return None


_NASNET_CELL = r"^(?:normal|reduction)_\w+?_((?:stem_)?\d+)$"


def _entries():
    B = Backbone
    yield B("vgg16", "VGG16", "vgg16", "caffe", 224, 32, 14_714_688, r"^(block\d+)_", weighted_layers=13)
    yield B("vgg19", "VGG19", "vgg19", "caffe", 224, 32, 20_024_384, r"^(block\d+)_", weighted_layers=16)
    for depth, params, weighted in ((50, 23_587_712, 106), (101, 42_658_176, 208), (152, 58_370_944, 310)):
        yield B(
            f"resnet{depth}",
            f"ResNet{depth}",
            "resnet",
            "caffe",
            224,
            32,
            params,
            r"^(conv\d_block\d+)_",
            weighted_layers=weighted,
        )
    yield B(
        "resnet50_v2", "ResNet50V2", "resnet_v2", "tf", 224, 32, 23_564_800, r"^(conv\d_block\d+)_", weighted_layers=102
    )
    yield B(
        "inception_v3", "InceptionV3", "inception_v3", "tf", 299, 75, 21_802_784, r"^(mixed\d+)", weighted_layers=188
    )
    yield B(
        "inception_resnet_v2",
        "InceptionResNetV2",
        "inception_resnet_v2",
        "tf",
        299,
        75,
        54_336_736,
        r"^(mixed_\w+|block\d+_\d+)",
        weighted_layers=448,
    )
    yield B("xception", "Xception", "xception", "tf", 299, 71, 20_861_480, r"^(block\d+)_", weighted_layers=80)
    yield B(
        "mobilenet", "MobileNet", "mobilenet", "tf", 224, 32, 3_228_864, r"^conv_(?:dw|pw)_(\d+)", weighted_layers=54
    )
    yield B(
        "mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf", 224, 32, 2_257_984, r"^(block_\d+)_", weighted_layers=104
    )
    yield B(
        "mobilenet_v3_small",
        "MobileNetV3Small",
        "mobilenet_v3",
        "none",
        224,
        32,
        939_120,
        r"^(expanded_conv(?:_\d+)?)/",
        weighted_layers=86,
    )
    yield B(
        "mobilenet_v3_large",
        "MobileNetV3Large",
        "mobilenet_v3",
        "none",
        224,
        32,
        2_996_352,
        r"^(expanded_conv(?:_\d+)?)/",
        weighted_layers=108,
    )
    for depth, params, weighted in ((121, 7_037_504, 241), (169, 12_642_880, 337), (201, 18_321_984, 401)):
        yield B(
            f"densenet{depth}",
            f"DenseNet{depth}",
            "densenet",
            "torch",
            224,
            32,
            params,
            r"^(conv\d_block\d+)_",
            weighted_layers=weighted,
        )
    for i, (size, params, weighted) in enumerate(
        [
            (224, 4_049_571, 131),
            (240, 6_575_239, 185),
            (260, 7_768_569, 185),
            (300, 10_783_535, 209),
            (380, 17_673_823, 257),
            (456, 28_513_527, 311),
            (528, 40_960_143, 359),
            (600, 64_097_687, 437),
        ]
    ):
        yield B(
            f"efficientnet_b{i}",
            f"EfficientNetB{i}",
            "efficientnet",
            "none",
            size,
            32,
            params,
            r"^(block\d+[a-z])_",
            weighted_layers=weighted,
            imagenet_changes_architecture=True,
        )
    for variant, size, params, weighted in (
        ("b0", 224, 5_919_312, 150),
        ("b1", 240, 6_931_124, 184),
        ("b2", 260, 8_769_374, 192),
        ("b3", 300, 12_930_622, 224),
        ("s", 384, 20_331_360, 280),
    ):
        yield B(
            f"efficientnet_v2_{variant}",
            f"EfficientNetV2{variant.upper()}",
            "efficientnet_v2",
            "none",
            size,
            32,
            params,
            r"^(block\d+[a-z])_",
            weighted_layers=weighted,
        )
    yield B(
        "nasnet_mobile",
        "NASNetMobile",
        "nasnet",
        "tf",
        224,
        32,
        4_269_716,
        _NASNET_CELL,
        imagenet_size_only=True,
        weighted_layers=388,
    )
    yield B(
        "nasnet_large",
        "NASNetLarge",
        "nasnet",
        "tf",
        331,
        32,
        84_916_818,
        _NASNET_CELL,
        imagenet_size_only=True,
        weighted_layers=532,
    )
    yield B(
        "convnext_tiny",
        "ConvNeXtTiny",
        "convnext",
        "none",
        224,
        32,
        27_820_128,
        r"_(stage_\d+_block_\d+)_",
        weighted_layers=95,
    )


# TF Hub image feature vectors: `--backbone hub --weights <URL or SavedModel dir> --image-size N`.
HUB = Backbone("hub", "", "", "unit", 224, 32, 0, description="TF Hub image feature vector (--weights: its handle)")
# Text encoders. A TF Hub sentence encoder that takes raw strings (Universal Sentence Encoder,
# NNLM, or any such handle); and one learned from scratch: the vocabulary (words and word
# pairs) computed in Transform, an embedding averaged over the text, for users without one.
HUB_TEXT = Backbone(
    "hub_text", "", "", "text", 0, 0, kind="text", description="TF Hub sentence encoder, strings in (--weights)"
)
TEXT_SCRATCH = Backbone(
    "text_scratch", "", "", "text", 0, 0, kind="text", description="words and word pairs, embedded and averaged"
)
# The classic bar, in the graph: the TF-IDF vector of words and word pairs (vocabulary and
# document frequencies computed in Transform) under a linear head, L2-regularised as
# scikit-learn's logistic regression.
TEXT_TFIDF = Backbone(
    "text_tfidf", "", "", "text", 0, 0, kind="text", description="TF-IDF of words and word pairs, linear head"
)
LEARNED_TEXT = ("text_scratch", "text_tfidf")  # text models learned from the data alone (weights none)
# The BERT family as TF Hub publishes it (BERT, small BERTs, ELECTRA, ALBERT, ...): a
# preprocessing model (text_preprocessor), run in Transform, and the encoder (--weights), whose
# pooled output feeds the head; `trainable: N` counts its transformer blocks from the top.
HUB_BERT = Backbone(
    "hub_bert",
    "",
    "",
    "text",
    0,
    0,
    kind="text",
    description="TF Hub BERT-family encoder (--weights) with its preprocessing model (--text-preprocessor)",
)

_REGISTRY = {b.name: b for b in [*_entries(), HUB, HUB_TEXT, TEXT_SCRATCH, TEXT_TFIDF, HUB_BERT]}
HUB_NAMES = (HUB.name, HUB_TEXT.name, HUB_BERT.name)  # built from a TF Hub handle


class UnknownBackboneError(ValueError):
    pass


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Backbone:
    """The registry entry for `name`; an unknown name names the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}.{hint} Known: {', '.join(names())} (see `graft backbones`)."
        ) from None


class WeightsUnavailableError(RuntimeError):
    pass


def blocks(backbone: Backbone, model) -> dict[str, int]:
    """The backbone's fine-tuning blocks in input-to-output order, from its layer names, each
    with the index of its first layer."""
    found = {}
    for index, layer in enumerate(model.layers):
        match = re.search(backbone.block_pattern, layer.name) if backbone.block_pattern else None
        if match:
            found.setdefault(match.group(1), index)
    return found


def available(backbone: Backbone) -> bool:
    """Whether the installed Keras has this architecture (TF Hub needs tensorflow_hub)."""
    if backbone.is_hub:
        import importlib.util

        return importlib.util.find_spec("tensorflow_hub") is not None
    if backbone.kind == "text":
        return True
    import tf_keras as keras

    return hasattr(keras.applications, backbone.keras_class)


def is_hub_handle(weights: str) -> bool:
    return weights.startswith(("http://", "https://", "gs://")) or os.path.isdir(weights)


def _build_hub(handle: str, image_size: int):
    """A TF Hub image feature vector (URL or local TF2 SavedModel dir) as a Keras model."""
    import tf_keras as keras

    layer = load_hub_layer(handle, "hub_feature_vector")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    return keras.Model(inputs, layer(inputs), name="hub")


@contextlib.contextmanager
def _hub_handle(handle: str):
    """Loading a TF Hub handle: an offline download fails in seconds, with what to do. Text
    models may hold tensorflow-text's ops (a BERT preprocessing model's WordPiece, the
    multilingual USE's SentencePiece), which must be registered before they load."""
    import tensorflow_text  # noqa: F401

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        yield
    except Exception as err:
        message = str(err).splitlines()[0][:300]
        hint = (
            "  Offline: download the model where there is a network, unpack it, and pass the local "
            "directory instead (or set TFHUB_CACHE_DIR to a populated cache)."
            if "://" in handle
            else "  Is it a TF2 SavedModel directory (saved_model.pb, variables/) in TF Hub's format?"
        )
        raise WeightsUnavailableError(f"cannot load TF Hub handle {handle}: {message}\n{hint}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def load_hub_layer(handle: str, name: str, **kwargs):
    """hub.KerasLayer for `handle` (frozen until a stage unfreezes it)."""
    import tensorflow_hub as hub

    with _hub_handle(handle):
        return hub.KerasLayer(handle, trainable=False, name=name, **kwargs)


def load_hub_model(handle: str):
    """The SavedModel behind `handle` as an object (a BERT preprocessing model's `tokenize`)."""
    import tensorflow_hub as hub

    with _hub_handle(handle):
        return hub.load(handle)


def build_text_encoder(backbone: Backbone, weights: str, max_tokens: int, vocab_size: int, embedding_dim: int):
    """The text encoder as a Keras model: strings [batch] in (hub_text), token ids
    [batch, max_tokens] (text_scratch, hub_bert; 0 = padding) or the TF-IDF vector
    [batch, vocab_size + 1] (text_tfidf, the last entry out of vocabulary) in; a vector per text out."""
    import tensorflow as tf
    import tf_keras as keras

    if backbone.name == HUB_TEXT.name:
        layer = load_hub_layer(weights, "hub_sentence_encoder")
        inputs = keras.Input((), dtype=tf.string, name="text")
        return keras.Model(inputs, layer(inputs), name="hub_text")
    if backbone.name == HUB_BERT.name:
        from components.backbones import bert_encoder

        with _hub_handle(weights):  # only the loading: a build error is not an offline handle
            encoder = bert_encoder.load(weights)
        try:
            return bert_encoder.build(encoder, max_tokens)
        except ValueError as err:
            raise WeightsUnavailableError(str(err)) from None
    if backbone.name == TEXT_TFIDF.name:  # the vector is the feature: nothing to learn below the head
        inputs = keras.Input((vocab_size + 1,), dtype=tf.float32, name="tfidf")
        return keras.Model(inputs, keras.layers.Activation("linear", name="tfidf_vector")(inputs), name="text_tfidf")
    inputs = keras.Input((max_tokens,), dtype=tf.int64, name="token_ids")
    # Ids 1..vocab_size + 1 (the last: out of vocabulary), 0 = padding, left out of the average.
    # Keras' masked GlobalAveragePooling1D divides 0 by 0 for a text without tokens (empty or
    # all whitespace at serving): NaN probabilities. Such a text averages to the zero vector.
    embedded = keras.layers.Embedding(vocab_size + 2, embedding_dim, name="embedding")(inputs)
    present = tf.cast(inputs > 0, embedded.dtype)[..., None]
    pooled = tf.reduce_sum(embedded * present, axis=1) / tf.maximum(tf.reduce_sum(present, axis=1), 1.0)
    return keras.Model(inputs, pooled, name="text_scratch")


def build(backbone: Backbone, image_size: int, weights: str, **kwargs):
    """The Keras backbone without its top, for `image_size` RGB input.

    `weights` is 'imagenet', 'none', or a path to a Keras weights file for this architecture;
    for the `hub` backbone, the TF Hub handle (URL or local SavedModel directory).
    ImageNet weights come from the Keras download cache (~/.keras/models); where they are not
    cached and cannot be downloaded, this fails at once with a message saying what to do.
    """
    import tf_keras as keras

    if backbone.name == HUB.name:
        return _build_hub(weights, image_size)
    constructor = getattr(keras.applications, backbone.keras_class)
    weights_arg = None if weights in (None, "none") else weights
    if weights_arg not in (None, "imagenet") and not os.path.exists(weights_arg):
        raise WeightsUnavailableError(f"weights file not found: {weights_arg}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # an offline download must fail in seconds, not minutes
    try:
        return constructor(
            include_top=False,
            weights=weights_arg,
            input_shape=(image_size, image_size, 3),
            **kwargs,
        )
    except Exception as err:  # keras raises bare Exception for download failures
        if weights_arg != "imagenet" or "URL fetch failure" not in str(err):
            if weights_arg not in (None, "imagenet"):
                raise WeightsUnavailableError(
                    f"cannot load weights file {weights_arg} into {backbone.name}: {err}"
                ) from err
            raise
        found = re.search(r"https?://\S+?\.h5", str(err))
        url = found.group(0) if found else "the Keras download site"
        filename = url.rsplit("/", 1)[-1] if found else "<weights file>.h5"
        cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "models")
        raise WeightsUnavailableError(
            f"cannot download ImageNet weights for {backbone.name} ({url}): no network?\n"
            f"  Either pass a local Keras weights file: --weights /path/to/{filename}\n"
            f"  or place that file in the Keras cache as {os.path.join(cache, filename)} "
            "(for air-gapped clusters: bake it into the image at that path)."
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
