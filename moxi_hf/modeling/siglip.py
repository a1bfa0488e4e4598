"""SigLIP with token removal: the zero-shot model (attention pooling over the kept patches) and the classifier.

SigLIP has no CLS token: the vision tower embeds the patches with position embeddings, runs the
encoder and ``post_layernorm`` on every token, and ``SiglipModel``'s image feature is its
attention-pooling head (a learned probe attending over the tokens, then LayerNorm + MLP): here
over the kept tokens only. ``SiglipForImageClassification`` averages the tokens instead.

Empty coalition: no token runs through the encoder. The probe then attends to nothing; its
attention output (the weighted sum of no values) is defined as the zero vector before the output
projection, so the feature of the empty image is the head applied to the projection's bias. The
classifier's average of no token is the zero vector: v(empty) = its bias.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipForImageClassification, SiglipModel, SiglipVisionModel
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.models.siglip.modeling_siglip import SiglipOutput
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .image_text import TokenRemovalImageText
from .masks import EmbeddingMask, mean_or_zeros
from .mixin import TokenRemovalClassifier, TokenRemovalModel

__all__ = ["MoXISiglipVisionModel", "MoXISiglipModel", "MoXISiglipForImageClassification", "pool_kept_tokens"]


def pool_kept_tokens(head: nn.Module, hidden_state: torch.Tensor) -> torch.Tensor:
    """``SiglipMultiheadAttentionPoolingHead`` over the kept tokens (B, K, D) -> (B, D), also for K = 0."""
    if hidden_state.shape[1]:
        return head(hidden_state)
    # SiglipMultiheadAttentionPoolingHead.forward after its attention, which over no token is defined here:
    # the weighted sum of no values is the zero vector, so the output projection gives its bias.
    projection = head.attention.out_proj
    batch_size = hidden_state.shape[0]
    bias = projection.bias if projection.bias is not None else hidden_state.new_zeros(projection.out_features)
    hidden_state = bias.expand(batch_size, 1, -1)

    residual = hidden_state
    hidden_state = head.layernorm(hidden_state)
    hidden_state = residual + head.mlp(hidden_state)

    return hidden_state[:, 0]


class MoXISiglipVisionModel(TokenRemovalModel, SiglipVisionModel):
    """``SiglipVisionModel`` (no CLS token) whose ``forward`` takes ``embedding_mask``."""

    num_special_tokens = 0

    def encoder_layers(self):
        return self.encoder.layers

    def embed(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=None):
        """Patches with positions (B, N, D)."""
        return self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))

    def encode(self, embedding_output, attention_mask=None, token_index=None, resolution=None,
               interpolate_pos_encoding=None, **kwargs):
        hidden_states = embedding_output
        if hidden_states.shape[1]:  # a sequence with no token at all has nothing to attend to
            hidden_states = self.encoder(inputs_embeds=hidden_states, attention_mask=attention_mask,
                                         **kwargs).last_hidden_state
        return self.post_layernorm(hidden_states)

    def final_norm(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.post_layernorm(hidden_states)

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor | None:
        return pool_kept_tokens(self.head, sequence_output) if self.use_head else None

    # Copied from transformers.models.siglip.modeling_siglip.SiglipVisionModel.forward with the tokens outside
    # ``embedding_mask`` removed after the embeddings and the pooling head over the kept ones.
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    # differs from transformers (replaces 2 lines, 3b44326206): no auto_docstring (it documents the parent's
    # arguments only); takes embedding_mask
    def forward(
        self,
        pixel_values,
        interpolate_pos_encoding: bool | None = False,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        # same as transformers
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        # differs from transformers (replaces 2 lines, b09c6ef5a4): token removal; a sequence with no
        # token kept has nothing to encode
        if embedding_mask is not None:
            hidden_states, _ = self.keep_tokens(hidden_states, embedding_mask)
        if hidden_states.shape[1]:
            encoder_outputs: BaseModelOutput = self.encoder(
                inputs_embeds=hidden_states,
                **kwargs,
            )
            hidden_states = encoder_outputs.last_hidden_state
        last_hidden_state = hidden_states
        # same as transformers
        last_hidden_state = self.post_layernorm(last_hidden_state)

        # differs from transformers (replaces 1 line, b8e96be367): the pooling head attends over the kept tokens
        pooler_output = pool_kept_tokens(self.head, last_hidden_state) if self.use_head else None
        # same as transformers

        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooler_output,
        )


class MoXISiglipModel(TokenRemovalImageText, SiglipModel):
    """``SiglipModel`` whose ``get_image_features`` and ``forward`` take ``embedding_mask`` (the patches to keep).

    The image feature is the attention-pooling head over the kept tokens. A checkpoint without
    that head (``vision_use_head=False``) has no image feature to compare with text.
    """

    backbone_class = MoXISiglipVisionModel
    link = "sigmoid"

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        if not self.backbone.use_head:
            raise ValueError("this SigLIP vision tower has no attention-pooling head (vision_use_head=False)")
        return self.backbone.pool(sequence_output)

    # Copied from transformers.models.siglip.modeling_siglip.SiglipModel.get_image_features with
    # ``embedding_mask`` passed to the vision tower.
    @can_return_tuple
    # differs from transformers (replaces 2 lines, 6cbefcb32a): no auto_docstring (it documents the parent's
    # arguments only); takes embedding_mask
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPooling:
        # same as transformers
        # differs from transformers (replaces 1 line, 8f5c753321): embedding_mask reaches the vision tower
        return self.vision_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            embedding_mask=embedding_mask,
            **kwargs,
        )

    # Copied from transformers.models.siglip.modeling_siglip.SiglipModel.forward with ``embedding_mask`` passed
    # to the vision tower only (the text tower gets the other keyword arguments, as in the stock forward).
    @can_return_tuple
    # differs from transformers (replaces 2 lines, 47dcc0453a): no auto_docstring (it documents the parent's
    # arguments only); takes embedding_mask
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> SiglipOutput:
        # same as transformers
        # differs from transformers (replaces 1 line, d46ec55dcc): embedding_mask reaches the vision tower only
        vision_outputs: BaseModelOutputWithPooling = self.vision_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            embedding_mask=embedding_mask,
            **kwargs,
        )
        # same as transformers

        text_outputs: BaseModelOutputWithPooling = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **kwargs,
        )

        image_embeds = vision_outputs.pooler_output
        text_embeds = text_outputs.pooler_output

        # normalized features
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)

        # cosine similarity as logits
        logits_per_text = torch.matmul(text_embeds, image_embeds.t().to(text_embeds.device))

        logit_scale, logit_bias = self.logit_scale.to(text_embeds.device), self.logit_bias.to(text_embeds.device)
        logits_per_text = logits_per_text * logit_scale.exp() + logit_bias

        logits_per_image = logits_per_text.t()

        loss = None
        if return_loss:
            eye = torch.eye(logits_per_text.size(0), device=logits_per_text.device)
            m1_diag1 = -torch.ones_like(logits_per_text) + 2 * eye
            loglik = torch.nn.functional.logsigmoid(m1_diag1 * logits_per_text)
            nll = -torch.sum(loglik, dim=-1)
            loss = nll.mean()

        return SiglipOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


class MoXISiglipForImageClassification(TokenRemovalClassifier, SiglipForImageClassification):
    """``SiglipForImageClassification`` with ``embedding_mask``: the head averages the kept tokens.

    With no patch kept there is no token at all; the average of nothing is the zero vector, so
    v(empty) = the classifier's bias.
    """

    backbone_name = "vision_model"
    backbone_class = MoXISiglipVisionModel
    head_reads_special_only = False

    def build_backbone(self, config) -> MoXISiglipVisionModel:
        return self.backbone_class._from_config(config.vision_config)

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(mean_or_zeros(sequence_output))
