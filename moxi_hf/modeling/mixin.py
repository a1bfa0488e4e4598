"""The two mixins that give any ViT-family backbone and classifier ``forward(..., embedding_mask)``.

Token removal is done after the stock embeddings (patch tokens with their position embeddings,
special tokens prepended): the sequence is gathered down to the special tokens and the kept
patches, so a kept patch keeps its position. Everything per call (the mask, the kept indices) is
an argument, never module state, so threads may share one model.

A new architecture declares where its parts live (:attr:`TokenRemovalModel.num_special_tokens`,
:meth:`TokenRemovalModel.encoder_layers`, :meth:`TokenRemovalClassifier.head`) and is otherwise
its transformers parent.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .masks import EmbeddingMask, embedding_mask_to_indices

__all__ = ["TokenRemovalModel", "TokenRemovalClassifier", "keep_attention_columns"]


def keep_attention_columns(attention_mask: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
    """Drop the columns of a full-length (B, S + N) attention mask whose tokens were removed."""
    if attention_mask.ndim != 2:
        return attention_mask
    return attention_mask.gather(1, token_index.to(attention_mask.device))


class TokenRemovalModel:
    """Mixin for a transformers ViT-family backbone: ``forward(..., embedding_mask)``, ``embed``, ``encode``."""

    #: Tokens before the patches in the embedded sequence (CLS, distillation, registers).
    num_special_tokens: int = 1
    #: False for backbones whose embeddings always interpolate and take no such argument (DINOv2).
    embeddings_take_interpolate: bool = True

    def encoder_layers(self) -> nn.ModuleList:
        """The transformer layers, in order."""
        return self.layers

    def embed(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
    ) -> torch.Tensor:
        """The stock embedded sequence (B, S + N, D): special tokens then patches, positions added."""
        expected_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if pixel_values.dtype != expected_dtype:
            pixel_values = pixel_values.to(expected_dtype)
        if self.embeddings_take_interpolate:
            return self.embeddings(
                pixel_values, bool_masked_pos=bool_masked_pos, interpolate_pos_encoding=interpolate_pos_encoding
            )
        return self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)

    def token_index(self, embedding_mask: EmbeddingMask, batch_size: int, num_patches: int,
                    device: torch.device) -> torch.Tensor:
        """Rows of the embedded sequence to keep (B, S + K): the special tokens, then the kept patches."""
        kept = embedding_mask_to_indices(embedding_mask, batch_size, num_patches, device)
        special = torch.arange(self.num_special_tokens, device=device).expand(batch_size, -1)
        return torch.cat((special, kept + self.num_special_tokens), dim=1)

    def keep_tokens(self, embedding_output: torch.Tensor,
                    embedding_mask: EmbeddingMask) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedded sequence (B, S + N, D) gathered to its special tokens and kept patches (B, S + K, D),
        and the rows kept (B, S + K)."""
        batch_size, length, hidden = embedding_output.shape
        token_index = self.token_index(
            embedding_mask, batch_size, length - self.num_special_tokens, embedding_output.device
        )
        return embedding_output.gather(1, token_index.unsqueeze(-1).expand(-1, -1, hidden)), token_index

    def encode(
        self,
        embedding_output: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
        resolution: tuple[int, int] | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Encoder layers and final norm on an embedded sequence (B, L, D) -> (B, L, D).

        ``token_index`` (B, L) says which rows of the full sequence these are; ``resolution`` is the
        input's (height, width). Both matter only to layers with position-dependent attention.
        """
        hidden_states = embedding_output
        if hidden_states.shape[1]:  # a sequence with no token at all has nothing to attend to
            attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
            )
            for layer in self.encoder_layers():
                hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return self.final_norm(hidden_states)

    def final_norm(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The norm applied to every token after the last layer (B, L, D) -> (B, L, D)."""
        return self.layernorm(hidden_states)

    def pool(self, sequence_output: torch.Tensor) -> torch.Tensor | None:
        """The backbone's pooled output, as its parent computes it."""
        pooler = getattr(self, "pooler", None)
        return pooler(sequence_output) if pooler is not None else None

    # Copied from transformers.models.vit.modeling_vit.ViTModel.forward (transformers passes **kwargs to the
    # layers, not to the embeddings, so this forward has to be restated once, here)
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    # differs from transformers (replaces 13 lines, fa29bf4cd0): the tokens outside embedding_mask are removed
    # between the embeddings and the encoder; embed, encode and pool are each backbone's own steps
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        embedding_output = self.embed(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        token_index = None
        if embedding_mask is not None:
            embedding_output, token_index = self.keep_tokens(embedding_output, embedding_mask)
            if attention_mask is not None:
                attention_mask = keep_attention_columns(attention_mask, token_index)
        sequence_output = self.encode(
            embedding_output, attention_mask, token_index=token_index, resolution=tuple(pixel_values.shape[-2:]),
            interpolate_pos_encoding=interpolate_pos_encoding, **kwargs,
        )
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=self.pool(sequence_output))


class TokenRemovalClassifier:
    """Mixin for a transformers ViT-family classifier: one ``forward(..., embedding_mask)`` for all.

    Subclasses name their backbone attribute (:attr:`backbone_name`), the MoXI backbone class that
    replaces the stock one (:attr:`backbone_class`, built with :attr:`backbone_kwargs`) and, when the
    head reads more than the CLS token, :meth:`head`.
    """

    backbone_name: str
    backbone_class: type
    backbone_kwargs: dict = {}
    #: True when :meth:`head` reads only the special tokens (lets the fast engine skip the rest).
    head_reads_special_only: bool = True

    def __init__(self, config):
        super().__init__(config)
        # Same attribute name and parameter names as the parent: stock checkpoints load unchanged.
        setattr(self, self.backbone_name, self.build_backbone(config))
        self.post_init()

    def build_backbone(self, config) -> TokenRemovalModel:
        """The MoXI backbone for this classifier's config (image-text families build it from ``vision_config``)."""
        return self.backbone_class(config, **self.backbone_kwargs)

    @property
    def backbone(self) -> TokenRemovalModel:
        return getattr(self, self.backbone_name)

    @property
    def num_special_tokens(self) -> int:
        return self.backbone.num_special_tokens

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) from the encoder output (B, L, D); default: the CLS token."""
        return self.classifier(sequence_output[:, 0, :])

    def classify_embeddings(
        self, embedding_output: torch.Tensor, attention_mask: torch.Tensor | None = None, **encode_kwargs
    ) -> torch.Tensor:
        """Logits (B, num_labels) for an already embedded and gathered sequence (B, L, D)."""
        return self.head(self.backbone.encode(embedding_output, attention_mask, **encode_kwargs))

    def make_output(self, loss, logits, sequence_output, outputs):
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                embedding_mask: EmbeddingMask | None = None, **kwargs):
        """The parent's forward with ``embedding_mask``; every other argument (``interpolate_pos_encoding``,
        ``attention_mask``, output flags) goes to the backbone as the parent passes it."""
        outputs = self.backbone(pixel_values, embedding_mask=embedding_mask, **kwargs)
        sequence_output = outputs.last_hidden_state
        logits = self.head(sequence_output)
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return self.make_output(loss, logits, sequence_output, outputs)
