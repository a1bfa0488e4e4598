"""CLIP with token removal: the zero-shot model (image features over the kept patches) and the classifier.

CLIP's vision tower embeds CLS + patches with position embeddings, applies ``pre_layrnorm`` (per
token, so it is part of the embedded sequence the kept tokens are gathered from), runs the
encoder, and pools with ``post_layernorm`` on the CLS token; ``CLIPModel`` then applies
``visual_projection``. ``CLIPForImageClassification`` instead averages the encoder's patch tokens
(no CLS, no ``post_layernorm``): here the kept ones, and the average of none is the zero vector,
so v(empty) of that classifier is its bias.
"""

from __future__ import annotations

import torch
from transformers import CLIPForImageClassification, CLIPModel, CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput, _get_vector_norm, image_text_contrastive_loss
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .image_text import TokenRemovalImageText
from .masks import EmbeddingMask, mean_or_zeros
from .mixin import TokenRemovalClassifier, TokenRemovalModel

__all__ = ["MoXICLIPVisionModel", "MoXICLIPModel", "MoXICLIPForImageClassification"]


class MoXICLIPVisionModel(TokenRemovalModel, CLIPVisionModel):
    """``CLIPVisionModel`` whose ``forward`` takes ``embedding_mask``: CLS is always kept."""

    def encoder_layers(self):
        return self.encoder.layers

    def embed(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=None):
        """CLS + patches with positions, after ``pre_layrnorm`` (B, 1 + N, D)."""
        embeddings = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        return self.pre_layrnorm(embeddings)

    def encode(self, embedding_output, attention_mask=None, token_index=None, resolution=None,
               interpolate_pos_encoding=None, **kwargs):
        # Positions are in the embedded tokens already; CLIP leaves the encoder output unnormalised.
        return self.encoder(inputs_embeds=embedding_output, attention_mask=attention_mask, **kwargs).last_hidden_state

    def final_norm(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.post_layernorm(sequence_output[:, 0, :])

    # Copied from transformers.models.clip.modeling_clip.CLIPVisionModel.forward with the tokens outside
    # ``embedding_mask`` removed after ``pre_layrnorm``.
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    # differs from transformers (replaces 2 lines, a09c924871): no auto_docstring (it documents the parent's
    # arguments only); takes embedding_mask
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = False,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        # same as transformers
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden_states = self.pre_layrnorm(hidden_states)
        # differs from transformers (replaces 0 lines, e3b0c44298): token removal
        if embedding_mask is not None:
            hidden_states, _ = self.keep_tokens(hidden_states, embedding_mask)
        # same as transformers

        encoder_outputs: BaseModelOutput = self.encoder(
            inputs_embeds=hidden_states,
            **kwargs,
        )

        last_hidden_state = encoder_outputs.last_hidden_state
        pooled_output = last_hidden_state[:, 0, :]
        pooled_output = self.post_layernorm(pooled_output)

        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled_output,
        )


class MoXICLIPModel(TokenRemovalImageText, CLIPModel):
    """``CLIPModel`` whose ``get_image_features`` and ``forward`` take ``embedding_mask`` (the patches to keep).

    The image feature is ``visual_projection(post_layernorm(CLS))`` after the encoder ran on CLS and
    the kept patches; with no patch kept, CLS alone (the same feature for every image).
    """

    backbone_class = MoXICLIPVisionModel
    head_reads_special_only = True
    link = "softmax"

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.backbone.pool(sequence_output))

    # Copied from transformers.models.clip.modeling_clip.CLIPModel.get_image_features with
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
        # differs from transformers (replaces 1 line, 7c56465b50): embedding_mask reaches the vision tower
        vision_outputs: BaseModelOutputWithPooling = self.vision_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            embedding_mask=embedding_mask,
            return_dict=True,
            **kwargs,
        )
        # same as transformers
        pooled_output = vision_outputs.pooler_output
        vision_outputs.pooler_output = self.visual_projection(pooled_output)

        return vision_outputs

    # Copied from transformers.models.clip.modeling_clip.CLIPModel.forward with ``embedding_mask`` passed to
    # get_image_features only (the text tower gets the other keyword arguments, as in the stock forward).
    @can_return_tuple
    # differs from transformers (replaces 2 lines, b712dbb36a): no auto_docstring (it documents the parent's
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
    ) -> CLIPOutput:
        # same as transformers
        # differs from transformers (replaces 1 line, 60af3c10cc): embedding_mask reaches the vision tower only
        vision_outputs: BaseModelOutputWithPooling = self.get_image_features(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            embedding_mask=embedding_mask,
            **kwargs,
        )
        # same as transformers

        text_outputs: BaseModelOutputWithPooling = self.get_text_features(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **kwargs,
        )

        image_embeds = vision_outputs.pooler_output
        text_embeds = text_outputs.pooler_output

        # normalized features
        image_embeds = image_embeds / _get_vector_norm(image_embeds)
        text_embeds = text_embeds / _get_vector_norm(text_embeds)

        # cosine similarity as logits
        logits_per_text = torch.matmul(text_embeds, image_embeds.t().to(text_embeds.device))
        logits_per_text = logits_per_text * self.logit_scale.exp().to(text_embeds.device)

        logits_per_image = logits_per_text.t()

        loss = None
        if return_loss:
            loss = image_text_contrastive_loss(logits_per_text)

        return CLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


class MoXICLIPForImageClassification(TokenRemovalClassifier, CLIPForImageClassification):
    """``CLIPForImageClassification`` with ``embedding_mask``: the head averages the kept patch tokens.

    CLS runs through the encoder but the head does not read it; with no patch kept the average
    is the zero vector, so v(empty) = the classifier's bias.
    """

    backbone_name = "vision_model"
    backbone_class = MoXICLIPVisionModel
    head_reads_special_only = False

    def build_backbone(self, config) -> MoXICLIPVisionModel:
        return self.backbone_class._from_config(config.vision_config)

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(mean_or_zeros(sequence_output[:, 1:, :]))
