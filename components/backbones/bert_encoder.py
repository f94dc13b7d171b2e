"""A TF Hub BERT-family encoder (TF Hub's common text API: a dict of input_word_ids,
input_mask and input_type_ids in, `pooled_output` out) as Graft's text backbone, and which of
its transformer blocks train.

The preprocessing model runs in Transform and gives token ids (0 = padding, as in every TF Hub
BERT, ELECTRA and ALBERT vocabulary); the mask and segment ids for one text are derived here.
One hub.KerasLayer holds the whole encoder, so `trainable: N` cannot be set per Keras layer:
it is a filter on the layer's variables by their TF Hub names, `transformer/layer_<i>/...`.
"""

from __future__ import annotations

import re
from typing import Optional

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras as keras

ENCODER_LAYER = "hub_bert_encoder"
_BLOCK = re.compile(r"(?:^|/)transformer/layer_(\d+)/")
# Below the blocks: the embeddings (word, position, type, their layer norm, ALBERT's projection).
# Outside the blocks and not an embedding: above them (the pooler, a pre-norm encoder's final
# layer norm), trained with any block.
_EMBEDDING = re.compile(r"embedding")


def block_of(variable_name: str) -> Optional[int]:
    """The transformer block a variable belongs to, from its TF Hub name; None outside blocks."""
    match = _BLOCK.search(variable_name)
    return int(match.group(1)) if match else None


def is_embedding(variable_name: str) -> bool:
    return block_of(variable_name) is None and bool(_EMBEDDING.search(variable_name))


class BlockTrainableEncoder(hub.KerasLayer):
    """hub.KerasLayer whose trainable variables can be limited to the blocks from
    `first_block` upward (with what sits above the blocks); the embeddings train only when
    everything does (`first_block` None: trainable 'all')."""

    first_block: Optional[int] = None  # None: every variable trains (when the layer is trainable)

    @property
    def block_count(self) -> int:
        found = {block_of(v.name) for v in self._func.trainable_variables}
        return len(found - {None})

    def _trains(self, variable) -> bool:
        if self.first_block is None:
            return True
        block = block_of(variable.name)
        return not is_embedding(variable.name) if block is None else block >= self.first_block

    def depth_groups(self) -> list[list]:
        """The trainable variables by depth, deepest first: embeddings, each block, what sits
        above the blocks (for discriminative rates, BERT's layer-wise rate decay)."""

        top = self.block_count

        def depth(variable):
            block = block_of(variable.name)
            if block is not None:
                return block
            return -1 if is_embedding(variable.name) else top

        groups = {}
        for variable in self.trainable_weights:
            groups.setdefault(depth(variable), []).append(variable)
        return [groups[d] for d in sorted(groups)]

    @property
    def trainable_weights(self):
        return [w for w in super().trainable_weights if self._trains(w)]

    @property
    def non_trainable_weights(self):
        held_back = [w for w in super().trainable_weights if not self._trains(w)] if self.trainable else []
        return held_back + super().non_trainable_weights


def load(handle: str) -> BlockTrainableEncoder:
    """The encoder behind `handle`, frozen."""
    return BlockTrainableEncoder(handle, trainable=False, name=ENCODER_LAYER)


def build(encoder: BlockTrainableEncoder, max_tokens: int) -> keras.Model:
    """Token ids int64 [batch, max_tokens] -> the encoder's pooled output [batch, hidden]."""
    ids = keras.Input((max_tokens,), dtype=tf.int64, name="token_ids")
    word_ids = tf.cast(ids, tf.int32)
    inputs = {
        "input_word_ids": word_ids,
        "input_mask": tf.cast(word_ids != 0, tf.int32),
        "input_type_ids": tf.zeros_like(word_ids),
    }
    outputs = encoder(inputs)
    if not isinstance(outputs, dict) or "pooled_output" not in outputs:
        found = ", ".join(sorted(outputs)) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(
            f"{encoder._handle}: the encoder returns {found}, no pooled_output; hub_bert takes a BERT-family "
            "encoder in TF Hub's text API (input_word_ids, input_mask, input_type_ids in; pooled_output out)"
        )
    return keras.Model(ids, outputs["pooled_output"], name="hub_bert")


def encoder_layer(base: keras.Model) -> Optional[BlockTrainableEncoder]:
    """The BERT encoder inside a backbone model, or None for other backbones."""
    for layer in base.layers:
        if isinstance(layer, BlockTrainableEncoder):
            return layer
    return None


def first_block_for(encoder: BlockTrainableEncoder, stage) -> Optional[int]:
    """Lowest block that trains in `stage` (a stages.Stage that unfreezes something), blocks
    named layer_<i>; raises ValueError naming the stage when the encoder cannot do what it asks."""
    if stage.trainable == "all":
        return None  # everything, the embeddings included
    blocks = encoder.block_count
    if not blocks:
        raise ValueError(
            f"stage {stage.name!r}: trainable {stage.trainable!r} counts transformer blocks, but no variable "
            "of this encoder is named transformer/layer_<i>/...; use trainable 'all' or 'none'"
        )
    try:
        return stage.first_trainable(blocks, {f"layer_{i}": i for i in range(blocks)}, "the encoder")
    except ValueError as err:
        raise ValueError(f"stage {stage.name!r}: {err}") from None
