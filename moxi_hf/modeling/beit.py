"""BEiT with token removal: the relative position bias is taken for the kept tokens only."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BeitForImageClassification, BeitModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.beit.modeling_beit import BeitLayer

from .masks import mean_or_zeros
from .mixin import TokenRemovalClassifier, TokenRemovalModel

__all__ = ["MoXIBeitLayer", "MoXIBeitModel", "MoXIBeitForImageClassification", "PooledHeadClassifier",
           "pool_kept_tokens", "select_bias", "window_bias"]


def select_bias(bias: torch.Tensor, token_index: torch.Tensor | None) -> torch.Tensor:
    """Rows and columns of a full (1, H, L, L) attention bias for the kept tokens: (B, H, K, K)."""
    if token_index is None:
        return bias
    rows = bias[0][:, token_index.unsqueeze(2), token_index.unsqueeze(1)]  # (H, B, K, K)
    return rows.transpose(0, 1)


def window_bias(module: nn.Module, resolution: tuple[int, int], patch_size: int, num_patches: int,
                interpolate_pos_encoding: bool, token_index: torch.Tensor | None) -> torch.Tensor:
    """A BEiT relative position bias module's bias for the full (CLS + patches) sequence, then selected."""
    height, width = resolution
    window_size = (height // patch_size, width // patch_size)
    bias = module(window_size, interpolate_pos_encoding, dim_size=num_patches + 1)
    return select_bias(bias, token_index)


class MoXIBeitLayer(BeitLayer):
    """``BeitLayer`` whose own relative position bias follows ``token_index`` (the kept tokens)."""

    # Copied from transformers.models.beit.modeling_beit.BeitLayer.forward
    # differs from transformers (replaces 1 line, 307c673fca): takes the kept tokens and the patch count
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        resolution: tuple[int, int] | None = None,
        token_index: torch.Tensor | None = None,
        num_patches: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        # same as transformers
        if self.relative_position_bias is not None:
            # differs from transformers (replaces 3 lines, 0b547bdf0e): the bias is built for the full sequence,
            # then selected for the kept tokens (the stock layer sizes it from hidden_states)
            num_patches = hidden_states.shape[1] - 1 if num_patches is None else num_patches
            relative_position_bias = window_bias(
                self.relative_position_bias, resolution, self.patch_size, num_patches, interpolate_pos_encoding,
                token_index,
            )
            # same as transformers
            attention_mask = (
                relative_position_bias + attention_mask if attention_mask is not None else relative_position_bias
            )

        residual = hidden_states
        hidden_states = self.layernorm_before(hidden_states)
        hidden_states, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.lambda_1 * hidden_states
        hidden_states = self.drop_path(hidden_states) + residual

        residual = hidden_states
        hidden_states = self.layernorm_after(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.lambda_2 * hidden_states
        hidden_states = self.drop_path(hidden_states) + residual
        return hidden_states


class MoXIBeitModel(TokenRemovalModel, BeitModel):
    """``BeitModel`` whose ``forward`` takes ``embedding_mask``; relative position biases follow the kept tokens."""

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        layers = config.num_hidden_layers
        rates = [config.drop_path_rate * i / max(layers - 1, 1) for i in range(layers)]
        self.layers = nn.ModuleList([MoXIBeitLayer(config, drop_path_rate=rate) for rate in rates])
        self.post_init()

    def embed(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=None):
        # BEiT's embeddings interpolate the absolute positions by themselves when the size differs.
        return self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)

    def encode(self, embedding_output, attention_mask=None, token_index=None, resolution=None,
               interpolate_pos_encoding=None, **kwargs):
        interpolate_pos_encoding = bool(interpolate_pos_encoding)
        if resolution is None:
            resolution = self.config.image_size, self.config.image_size
            resolution = tuple(resolution[0]) if isinstance(resolution[0], (tuple, list)) else resolution
        patch = self.config.patch_size
        num_patches = (resolution[0] // patch) * (resolution[1] // patch)
        hidden_states = embedding_output
        if hidden_states.shape[1]:
            attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
            )
            if self.shared_position_bias is not None:
                shared = window_bias(self.shared_position_bias, resolution, patch, num_patches,
                                      interpolate_pos_encoding, token_index)
                attention_mask = shared + attention_mask if attention_mask is not None else shared
            for layer in self.layers:
                hidden_states = layer(
                    hidden_states, attention_mask=attention_mask, interpolate_pos_encoding=interpolate_pos_encoding,
                    resolution=resolution, token_index=token_index, num_patches=num_patches, **kwargs,
                )
        return self.layernorm(hidden_states)

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor | None:
        return pool_kept_tokens(self.pooler, sequence_output)


def pool_kept_tokens(pooler: nn.Module | None, sequence_output: torch.Tensor) -> torch.Tensor | None:
    """A BEiT-style pooler on the kept tokens (B, 1 + K, D) -> (B, D): mean of the kept patch tokens +
    LayerNorm (the zero vector's norm if none are kept), or the CLS token; None without a pooler."""
    if pooler is None:
        return None
    if pooler.layernorm is None:
        return sequence_output[:, 0]
    return pooler.layernorm(mean_or_zeros(sequence_output[:, 1:, :]))


class PooledHeadClassifier(TokenRemovalClassifier):
    """Classifier mixin of BEiT-style models: the backbone's pooler over the kept tokens, then the classifier."""

    backbone_kwargs = {"add_pooling_layer": True}
    head_reads_special_only = False

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone.pool(sequence_output))


class MoXIBeitForImageClassification(PooledHeadClassifier, BeitForImageClassification):
    """``BeitForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "beit"
    backbone_class = MoXIBeitModel
