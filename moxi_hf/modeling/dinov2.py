"""DINOv2 (with and without registers) with token removal: register tokens are always kept."""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    Dinov2ForImageClassification,
    Dinov2Model,
    Dinov2WithRegistersForImageClassification,
    Dinov2WithRegistersModel,
)

from .masks import mean_or_zeros
from .mixin import TokenRemovalClassifier, TokenRemovalModel

__all__ = [
    "MoXIDinov2Model",
    "MoXIDinov2ForImageClassification",
    "MoXIDinov2WithRegistersModel",
    "MoXIDinov2WithRegistersForImageClassification",
]


class _Dinov2Backbone(TokenRemovalModel):
    # DINOv2 always interpolates its position embeddings to the input size.
    embeddings_take_interpolate = False

    def encoder_layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return sequence_output[:, 0, :]


class _Dinov2Head:
    head_reads_special_only = False

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """CLS ⊕ mean of the kept patch tokens (registers excluded); no patch -> a zero mean."""
        patches = sequence_output[:, self.num_special_tokens :]
        return self.classifier(torch.cat([sequence_output[:, 0], mean_or_zeros(patches)], dim=1))


class MoXIDinov2Model(_Dinov2Backbone, Dinov2Model):
    """``Dinov2Model`` whose ``forward`` takes ``embedding_mask``."""


class MoXIDinov2ForImageClassification(_Dinov2Head, TokenRemovalClassifier, Dinov2ForImageClassification):
    """``Dinov2ForImageClassification`` (CLS ⊕ patch mean) whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "dinov2"
    backbone_class = MoXIDinov2Model


class MoXIDinov2WithRegistersModel(_Dinov2Backbone, Dinov2WithRegistersModel):
    """``Dinov2WithRegistersModel`` whose ``forward`` takes ``embedding_mask``; registers count as special tokens."""

    def __init__(self, config):
        super().__init__(config)
        self.num_special_tokens = 1 + config.num_register_tokens


class MoXIDinov2WithRegistersForImageClassification(
    _Dinov2Head, TokenRemovalClassifier, Dinov2WithRegistersForImageClassification
):
    """``Dinov2WithRegistersForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "dinov2_with_registers"
    backbone_class = MoXIDinov2WithRegistersModel
