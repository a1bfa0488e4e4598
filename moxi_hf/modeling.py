"""ViT and DeiT classifiers that can drop patch tokens (MoXI's ViT-aware removal).

The subclasses keep every parameter name of their transformers parents, so
``MoXIViTForImageClassification.from_pretrained("google/vit-base-patch16-224")`` loads a stock
checkpoint and ``save_pretrained`` writes one that the stock class loads.

Token removal: patch embeddings get their own position embedding first, then only the kept
patches are gathered (:func:`select_batch_removing`), then the special tokens (CLS, and DeiT's
distillation token) are prepended. A kept patch therefore keeps its position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    ViTForImageClassification,
    ViTModel,
)
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.deit.modeling_deit import DeiTEmbeddings, DeiTLayer, DeiTPooler, DeiTPreTrainedModel
from transformers.models.vit.modeling_vit import ViTEmbeddings, ViTLayer, ViTPooler, ViTPreTrainedModel
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

__all__ = [
    "select_batch_removing",
    "embedding_mask_to_indices",
    "MoXIViTEmbeddings",
    "MoXIViTModel",
    "MoXIViTForImageClassification",
    "MoXIDeiTEmbeddings",
    "MoXIDeiTModel",
    "MoXIDeiTForImageClassification",
    "MoXIDeiTForImageClassificationWithTeacher",
]

EmbeddingMask = torch.Tensor | Sequence[Sequence[int]]


def embedding_mask_to_indices(
    embedding_mask: EmbeddingMask, batch_size: int, num_patches: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Validate an ``embedding_mask`` and return the kept patch indices as a LongTensor (B, K).

    ``embedding_mask`` lists the patches to KEEP, as a LongTensor (B, K), a list of B equal-length
    index lists, or a BoolTensor (B, N) keep-mask with the same number of True per row.
    Raises ``ValueError`` naming the problem for anything else.
    """
    if isinstance(embedding_mask, torch.Tensor):
        mask = embedding_mask
    else:
        rows = list(embedding_mask)
        lengths = {len(row) for row in rows}
        if len(lengths) > 1:
            raise ValueError(
                f"embedding_mask rows must all keep the same number of patches, got lengths {sorted(lengths)}"
            )
        try:
            mask = torch.tensor(rows, dtype=torch.long)
        except (TypeError, ValueError) as error:
            raise ValueError(f"embedding_mask must be a list of integer index lists: {error}") from None
        if mask.ndim == 1:  # [[], [], ...] -> shape (B, 0) rather than (B,)
            mask = mask.reshape(len(rows), 0)
    if mask.ndim != 2:
        raise ValueError(f"embedding_mask must be 2-D (batch, patches), got shape {tuple(mask.shape)}")
    if mask.shape[0] != batch_size:
        raise ValueError(f"embedding_mask has {mask.shape[0]} rows but the batch has {batch_size} images")
    if mask.dtype == torch.bool:
        if mask.shape[1] != num_patches:
            raise ValueError(
                f"a boolean embedding_mask must have one column per patch ({num_patches}), got {mask.shape[1]}"
            )
        counts = mask.sum(dim=1)
        if batch_size and bool((counts != counts[0]).any()):
            raise ValueError(
                "a boolean embedding_mask must keep the same number of patches in every row, "
                f"got counts {counts.tolist()}"
            )
        keep = int(counts[0]) if batch_size else 0
        # nonzero() is row-major, so each row's kept indices come out ascending.
        return mask.nonzero()[:, 1].reshape(batch_size, keep).to(device)
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(f"embedding_mask must hold integer indices or booleans, got dtype {mask.dtype}")
    mask = mask.long()
    if mask.numel():
        low, high = int(mask.min()), int(mask.max())
        if low < 0 or high >= num_patches:
            bad = low if low < 0 else high
            raise ValueError(f"embedding_mask index {bad} is out of range for {num_patches} patches")
        if mask.shape[1] > 1:
            ordered = mask.sort(dim=1).values
            duplicated = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
            if bool(duplicated.any()):
                row = int(duplicated.nonzero()[0, 0])
                raise ValueError(f"embedding_mask row {row} keeps a patch twice: {mask[row].tolist()}")
    return mask.to(device)


def select_batch_removing(embeddings: torch.Tensor, embedding_mask: EmbeddingMask) -> torch.Tensor:
    """Keep only some patch tokens of each row: (B, N, D) -> (B, K, D), one gather, no Python loop.

    ``embedding_mask`` gives the patches to keep (see :func:`embedding_mask_to_indices`).
    """
    batch_size, num_patches, hidden = embeddings.shape
    indices = embedding_mask_to_indices(embedding_mask, batch_size, num_patches, embeddings.device)
    return embeddings.gather(1, indices.unsqueeze(-1).expand(-1, -1, hidden))


class _TokenRemovalEmbeddings:
    """Shared by the ViT and DeiT embeddings: patch tokens with positions, then removal."""

    num_special_tokens: int

    def _special_tokens(self) -> torch.Tensor:
        raise NotImplementedError

    def position_encoding(self, height: int, width: int, interpolate_pos_encoding: bool) -> torch.Tensor:
        """The position embeddings (1, special + N, D) for an input of this size."""
        if interpolate_pos_encoding:
            # interpolate_pos_encoding only reads the shape of its first argument.
            length = self.num_patches_for(height, width) + self.num_special_tokens
            dummy = self.position_embeddings.new_empty(1, length, self.position_embeddings.shape[-1])
            return self.interpolate_pos_encoding(dummy, height, width)
        if height != self.image_size[0] or width != self.image_size[1]:
            raise ValueError(
                f"Input image size ({height}*{width}) doesn't match model ({self.image_size[0]}*{self.image_size[1]})."
            )
        return self.position_embeddings

    def num_patches_for(self, height: int, width: int) -> int:
        """Number of patch tokens for an input of ``height`` × ``width`` pixels."""
        patch = self.patch_embeddings.patch_size
        patch_h, patch_w = (patch, patch) if isinstance(patch, int) else tuple(patch)
        return (height // patch_h) * (width // patch_w)

    def embed(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(special, patches)``: special tokens (1, S, D) and patch tokens (B, N, D), positions added."""
        _, _, height, width = pixel_values.shape
        embeddings = self.patch_embeddings(pixel_values)
        batch_size, seq_length, _ = embeddings.shape
        if bool_masked_pos is not None:
            mask_tokens = self.mask_token.expand(batch_size, seq_length, -1)
            mask = bool_masked_pos.unsqueeze(-1).type_as(mask_tokens)
            embeddings = embeddings * (1.0 - mask) + mask_tokens * mask
        positions = self.position_encoding(height, width, bool(interpolate_pos_encoding))
        special = self._special_tokens() + positions[:, : self.num_special_tokens]
        patches = embeddings + positions[:, self.num_special_tokens :]
        return special, patches

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
        embedding_mask: EmbeddingMask | None = None,
    ) -> torch.Tensor:
        special, patches = self.embed(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        if embedding_mask is not None:
            patches = select_batch_removing(patches, embedding_mask)
        embeddings = torch.cat((special.expand(patches.shape[0], -1, -1), patches), dim=1)
        return self.dropout(embeddings)


class MoXIViTEmbeddings(_TokenRemovalEmbeddings, ViTEmbeddings):
    """``ViTEmbeddings`` whose ``forward`` also takes ``embedding_mask`` (patches to keep)."""

    num_special_tokens = 1

    def _special_tokens(self) -> torch.Tensor:
        return self.cls_token


class MoXIDeiTEmbeddings(_TokenRemovalEmbeddings, DeiTEmbeddings):
    """``DeiTEmbeddings`` (CLS + distillation token) whose ``forward`` also takes ``embedding_mask``."""

    num_special_tokens = 2

    def _special_tokens(self) -> torch.Tensor:
        return torch.cat((self.cls_token, self.distillation_token), dim=1)


def _keep_attention_columns(
    attention_mask: torch.Tensor, embedding_mask: EmbeddingMask, num_special: int, num_patches: int
) -> torch.Tensor:
    """Drop the columns of a full-length (B, S + N) attention mask whose patches were removed."""
    if attention_mask.ndim != 2 or attention_mask.shape[1] != num_special + num_patches:
        return attention_mask
    keep = embedding_mask_to_indices(embedding_mask, attention_mask.shape[0], num_patches, attention_mask.device)
    return torch.cat((attention_mask[:, :num_special], attention_mask[:, num_special:].gather(1, keep)), dim=1)


class _TokenRemovalModel:
    """Shared by the ViT and DeiT backbones: ``forward(..., embedding_mask)`` and ``encode``."""

    def encode(self, embedding_output: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the encoder layers and final LayerNorm on an embedded sequence (B, L, D) -> (B, L, D)."""
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        hidden_states = embedding_output
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return self.layernorm(hidden_states)

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        expected_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if pixel_values.dtype != expected_dtype:
            pixel_values = pixel_values.to(expected_dtype)
        embedding_output = self.embeddings(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            embedding_mask=embedding_mask,
        )
        if attention_mask is not None and embedding_mask is not None:
            num_patches = self.embeddings.num_patches_for(pixel_values.shape[-2], pixel_values.shape[-1])
            attention_mask = _keep_attention_columns(
                attention_mask, embedding_mask, self.embeddings.num_special_tokens, num_patches
            )
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        hidden_states = embedding_output
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class MoXIViTModel(_TokenRemovalModel, ViTModel):
    """``ViTModel`` whose ``forward`` takes ``embedding_mask`` (LongTensor (B, K) / lists / BoolTensor (B, N))."""

    def __init__(self, config, add_pooling_layer: bool = True, use_mask_token: bool = False):
        ViTPreTrainedModel.__init__(self, config)
        self.config = config
        self.embeddings = MoXIViTEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([ViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None
        self.post_init()


class MoXIDeiTModel(_TokenRemovalModel, DeiTModel):
    """``DeiTModel`` whose ``forward`` takes ``embedding_mask``."""

    def __init__(self, config, add_pooling_layer: bool = True, use_mask_token: bool = False):
        DeiTPreTrainedModel.__init__(self, config)
        self.config = config
        self.embeddings = MoXIDeiTEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([DeiTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = DeiTPooler(config) if add_pooling_layer else None
        self.post_init()


class _TokenRemovalClassifier:
    """Shared by the classification heads: ``forward(..., embedding_mask)`` and ``classify_embeddings``."""

    backbone_name: str

    @property
    def backbone(self) -> _TokenRemovalModel:
        return getattr(self, self.backbone_name)

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) from the encoder output (B, L, D)."""
        return self.classifier(sequence_output[:, 0, :])

    def classify_embeddings(
        self, embedding_output: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, num_labels) for an already embedded sequence (B, L, D), special tokens first."""
        return self.head(self.backbone.encode(embedding_output, attention_mask))


class MoXIViTForImageClassification(_TokenRemovalClassifier, ViTForImageClassification):
    """``ViTForImageClassification`` whose ``forward`` accepts ``embedding_mask`` (the patches to keep)."""

    backbone_name = "vit"

    def __init__(self, config):
        ViTPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.vit = MoXIViTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ):
        if embedding_mask is not None:
            kwargs["embedding_mask"] = embedding_mask
        return super().forward(
            pixel_values,
            labels=labels,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            **kwargs,
        )


class MoXIDeiTForImageClassification(_TokenRemovalClassifier, DeiTForImageClassification):
    """``DeiTForImageClassification`` whose ``forward`` accepts ``embedding_mask``."""

    backbone_name = "deit"

    def __init__(self, config):
        DeiTPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.deit = MoXIDeiTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ):
        if embedding_mask is not None:
            kwargs["embedding_mask"] = embedding_mask
        return super().forward(
            pixel_values,
            labels=labels,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            **kwargs,
        )


class MoXIDeiTForImageClassificationWithTeacher(_TokenRemovalClassifier, DeiTForImageClassificationWithTeacher):
    """``DeiTForImageClassificationWithTeacher`` (mean of the CLS and distillation heads) with ``embedding_mask``."""

    backbone_name = "deit"

    def __init__(self, config):
        DeiTPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.deit = MoXIDeiTModel(config, add_pooling_layer=False)
        self.cls_classifier = (
            nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.distillation_classifier = (
            nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        cls_logits = self.cls_classifier(sequence_output[:, 0, :])
        distillation_logits = self.distillation_classifier(sequence_output[:, 1, :])
        return (cls_logits + distillation_logits) / 2

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        attention_mask: torch.Tensor | None = None,
        embedding_mask: EmbeddingMask | None = None,
        **kwargs,
    ):
        if embedding_mask is not None:
            kwargs["embedding_mask"] = embedding_mask
        return super().forward(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            **kwargs,
        )


# transformers renames the 4.x checkpoint keys (``vit.encoder.layer.N...``) per backbone class name;
# our backbones load the same checkpoints, so they get their parents' renamings.
for _ours, _parent in ((MoXIViTModel, "ViTModel"), (MoXIDeiTModel, "DeiTModel")):
    _mapping = get_checkpoint_conversion_mapping(_parent)
    if _mapping:
        register_checkpoint_conversion_mapping(_ours.__name__, _mapping, overwrite=True)
