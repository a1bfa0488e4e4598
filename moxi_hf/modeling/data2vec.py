"""Data2Vec-vision with token removal: BEiT's architecture in older code (no ``attention_mask``).

Its attention adds its own relative position bias sized from the sequence it sees; here each
layer's bias (and the shared one) is built for the full sequence, taken for the kept tokens and
passed to the attention as the bias argument it already accepts; the attention's own copy is
switched off at construction.
"""

from __future__ import annotations

import torch
from transformers import Data2VecVisionForImageClassification, Data2VecVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .beit import PooledHeadClassifier, pool_kept_tokens, window_bias
from .masks import EmbeddingMask
from .mixin import TokenRemovalModel

__all__ = ["MoXIData2VecVisionModel", "MoXIData2VecVisionForImageClassification"]


class MoXIData2VecVisionModel(TokenRemovalModel, Data2VecVisionModel):
    """``Data2VecVisionModel`` whose ``forward`` takes ``embedding_mask``."""

    def __init__(self, config, add_pooling_layer: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        for layer in self.encoder.layer:
            # The bias module (and its parameter name) stays; the layer loop below applies it.
            layer.attention.attention.has_relative_position_bias = False

    def encoder_layers(self):
        return self.encoder.layer

    def embed(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=None):
        # The embeddings interpolate the absolute positions by themselves when the size differs.
        return self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)[0]

    def run_layers(self, hidden_states, token_index=None, resolution=None, interpolate_pos_encoding=False,
                   output_attentions=False, output_hidden_states=False):
        """The encoder: (last hidden states, all hidden states or None, attentions or None)."""
        patch = self.config.patch_size
        resolution = resolution or (self.config.image_size, self.config.image_size)
        num_patches = (resolution[0] // patch) * (resolution[1] // patch)
        interpolate = bool(interpolate_pos_encoding)
        shared = None
        if self.encoder.has_relative_position_bias and hidden_states.shape[1]:
            shared = window_bias(self.encoder.relative_position_bias, resolution, patch, num_patches, interpolate,
                                  token_index)
        all_hidden, all_attentions = [], []
        for layer in self.encoder.layer if hidden_states.shape[1] else ():
            all_hidden.append(hidden_states)
            attention = layer.attention.attention
            bias = shared
            if hasattr(attention, "relative_position_bias"):
                own = window_bias(attention.relative_position_bias, resolution, patch, num_patches, interpolate,
                                   token_index)
                bias = own if shared is None else own + shared
            outputs = layer(hidden_states, output_attentions=output_attentions, relative_position_bias=bias,
                            interpolate_pos_encoding=interpolate, resolution=resolution)
            hidden_states = outputs[0]
            if output_attentions:
                all_attentions.append(outputs[1])
        all_hidden.append(hidden_states)
        return (hidden_states, tuple(all_hidden) if output_hidden_states else None,
                tuple(all_attentions) if output_attentions else None)

    def encode(self, embedding_output, attention_mask=None, token_index=None, resolution=None,
               interpolate_pos_encoding=None, **kwargs):
        if attention_mask is not None:
            raise ValueError("Data2VecVision takes no attention_mask")
        return self.layernorm(self.run_layers(embedding_output, token_index, resolution, interpolate_pos_encoding)[0])

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor | None:
        return pool_kept_tokens(self.pooler, sequence_output)

    # Copied from transformers.models.data2vec.modeling_data2vec_vision.Data2VecVisionModel.forward
    # differs from transformers (replaces 2 lines, 8cd40368c8): no docstring decorator; embedding_mask, and no
    # attention_mask (refused, as the stock model has none)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        if attention_mask is not None:
            raise ValueError("Data2VecVision takes no attention_mask")
        # same as transformers
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        # differs from transformers (replaces 12 lines, 1f9f350079): the tokens outside embedding_mask are removed
        # after the embeddings; the layers run through run_layers (this older code has no output capturing)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        embedding_output = self.embed(pixel_values, bool_masked_pos)
        token_index = None
        if embedding_mask is not None:
            embedding_output, token_index = self.keep_tokens(embedding_output, embedding_mask)
        hidden_states, all_hidden, attentions = self.run_layers(
            embedding_output, token_index, tuple(pixel_values.shape[2:]), interpolate_pos_encoding,
            output_attentions, output_hidden_states,
        )
        sequence_output = self.layernorm(hidden_states)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output, pooler_output=self.pool(sequence_output),
            hidden_states=all_hidden, attentions=attentions,
        )


class MoXIData2VecVisionForImageClassification(PooledHeadClassifier, Data2VecVisionForImageClassification):
    """``Data2VecVisionForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "data2vec_vision"
    backbone_class = MoXIData2VecVisionModel
