"""The mixin that gives an image-text model (CLIP, SigLIP) image features over the kept patches only.

The text tower is untouched: text features are computed once per label set by the caller. The
vision tower is a :class:`~moxi_hf.modeling.mixin.TokenRemovalModel`, so the removal adapter
gathers its embedded sequence exactly as for a classifier; :meth:`TokenRemovalImageText.head`
turns the encoded kept tokens into the image feature the family compares with text.
"""

from __future__ import annotations

import torch

from .mixin import TokenRemovalModel

__all__ = ["TokenRemovalImageText"]


class TokenRemovalImageText:
    """Mixin for a transformers image-text model: ``get_image_features`` and ``forward`` take ``embedding_mask``.

    Subclasses set :attr:`backbone_class` (the MoXI vision tower, built from ``config.vision_config``
    under the stock attribute name ``vision_model``), :attr:`link` and :meth:`head`.
    """

    backbone_name = "vision_model"
    backbone_class: type
    #: True when :meth:`head` reads only the special tokens (lets the fast engine skip the rest).
    head_reads_special_only: bool = False
    #: How the pipeline turns candidate logits into scores: "softmax" over the candidates (CLIP) or an
    #: independent "sigmoid" per candidate (SigLIP).
    link: str

    def __init__(self, config):
        super().__init__(config)
        # Same attribute and parameter names as the parent: stock checkpoints load unchanged.
        self.vision_model = self.backbone_class._from_config(config.vision_config)
        self.post_init()

    @property
    def backbone(self) -> TokenRemovalModel:
        return self.vision_model

    @property
    def num_special_tokens(self) -> int:
        return self.backbone.num_special_tokens

    def head(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """Image features (B, projection) from the encoded kept tokens (B, L, D), before normalisation."""
        raise NotImplementedError

    def image_features_from_embeddings(self, embedding_output: torch.Tensor, **encode_kwargs) -> torch.Tensor:
        """Image features (B, projection) for an already embedded and gathered sequence (B, L, D)."""
        return self.head(self.backbone.encode(embedding_output, **encode_kwargs))

    def logit_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The scalars of the candidate logits: (``logit_scale``, ``logit_bias`` or None)."""
        return self.logit_scale, getattr(self, "logit_bias", None)
