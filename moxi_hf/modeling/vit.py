"""ViT, DeiT, ViT-MSN and I-JEPA with token removal: the mixins plus where each keeps its parts.

The public names are listed once, in :mod:`moxi_hf.modeling`.
"""

from __future__ import annotations

import torch
from transformers import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    IJepaForImageClassification,
    IJepaModel,
    ViTForImageClassification,
    ViTModel,
    ViTMSNForImageClassification,
    ViTMSNModel,
)
from transformers.models.deit.modeling_deit import (
    DeiTForImageClassificationWithTeacherOutput,
)

from .masks import mean_or_zeros
from .mixin import TokenRemovalClassifier, TokenRemovalModel


class MoXIViTModel(TokenRemovalModel, ViTModel):
    """``ViTModel`` whose ``forward`` takes ``embedding_mask`` (LongTensor (B, K) / lists / BoolTensor (B, N))."""


class MoXIViTForImageClassification(TokenRemovalClassifier, ViTForImageClassification):
    """``ViTForImageClassification`` whose ``forward`` accepts ``embedding_mask`` (the patches to keep)."""

    backbone_name = "vit"
    backbone_class = MoXIViTModel
    backbone_kwargs = {"add_pooling_layer": False}


class MoXIDeiTModel(TokenRemovalModel, DeiTModel):
    """``DeiTModel`` (CLS + distillation token) whose ``forward`` takes ``embedding_mask``."""

    num_special_tokens = 2


class MoXIDeiTForImageClassification(TokenRemovalClassifier, DeiTForImageClassification):
    """``DeiTForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "deit"
    backbone_class = MoXIDeiTModel
    backbone_kwargs = {"add_pooling_layer": False}


class MoXIDeiTForImageClassificationWithTeacher(TokenRemovalClassifier, DeiTForImageClassificationWithTeacher):
    """``DeiTForImageClassificationWithTeacher`` (mean of the CLS and distillation heads) with ``embedding_mask``."""

    backbone_name = "deit"
    backbone_class = MoXIDeiTModel
    backbone_kwargs = {"add_pooling_layer": False}

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return (self._heads(sequence_output)[0] + self._heads(sequence_output)[1]) / 2

    def _heads(self, sequence_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_classifier(sequence_output[:, 0, :]), self.distillation_classifier(sequence_output[:, 1, :])

    def make_output(self, loss, logits, sequence_output, outputs):
        cls_logits, distillation_logits = self._heads(sequence_output)
        return DeiTForImageClassificationWithTeacherOutput(
            logits=logits, cls_logits=cls_logits, distillation_logits=distillation_logits,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )


class MoXIViTMSNModel(TokenRemovalModel, ViTMSNModel):
    """``ViTMSNModel`` (ViT layers) whose ``forward`` takes ``embedding_mask``."""


class MoXIViTMSNForImageClassification(TokenRemovalClassifier, ViTMSNForImageClassification):
    """``ViTMSNForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "vit"
    backbone_class = MoXIViTMSNModel


class MoXIIJepaModel(TokenRemovalModel, IJepaModel):
    """``IJepaModel`` (no CLS token) whose ``forward`` takes ``embedding_mask``."""

    num_special_tokens = 0


class MoXIIJepaForImageClassification(TokenRemovalClassifier, IJepaForImageClassification):
    """``IJepaForImageClassification`` with ``embedding_mask``: the head averages the kept patch tokens.

    With no patch kept there is no token at all; the average of nothing is defined as the zero
    vector, so v(empty) = the classifier's bias.
    """

    backbone_name = "ijepa"
    backbone_class = MoXIIJepaModel
    backbone_kwargs = {"add_pooling_layer": False}
    head_reads_special_only = False

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(mean_or_zeros(sequence_output))
