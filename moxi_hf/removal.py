"""Removal adapters: show a model only some patches of an image.

Two ways, one interface (:class:`RemovalAdapter`):

- :class:`TokenRemoval` (ViT-family models): patch tokens are embedded once per image, the kept ones are
  gathered and the encoder runs on the shorter sequence.
- :class:`PixelMasking` (any image classifier): removed grid cells of the processed
  ``pixel_values`` are replaced by a baseline (0 in normalised space by default).

Both take ``keep`` masks over the *patch grid*; players are mapped to patches before (see
:class:`moxi_hf.players.Players`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .engine import FastEncoder, fast_encoder
from .errors import MoXIError
from .modeling import TokenRemovalClassifier, TokenRemovalImageText
from .players import as_pair

__all__ = ["RemovalAdapter", "TokenContext", "TokenRemoval", "PixelMasking", "PIXEL_BASELINES"]

PIXEL_BASELINES = ("zero", "mean", "blur")


class RemovalAdapter(ABC):
    """Turns ``keep`` masks over the patch grid into logits.

    ``grid`` is the patch grid (rows, cols) the masks refer to; ``keep`` is (C, N) bool with
    N = rows × cols, and ``image_index`` (C,) says which prepared image each row belongs to.
    """

    masking: str
    #: True when rows with different numbers of kept patches cannot share a forward pass.
    needs_equal_counts: bool = False
    #: How logits become probabilities: "softmax" over the classes, or "sigmoid" per class (multi-label and
    #: one-logit classifiers, SigLIP's zero-shot candidates); see :data:`moxi_hf.value.LINKS`.
    link: str = "softmax"
    #: When a coalition predicts the label: "argmax" or, under a sigmoid, "threshold" (p > 0.5); see
    #: :func:`moxi_hf.value.predicted_classes`.
    decision: str = "argmax"

    def __init__(self, model: torch.nn.Module, grid: tuple[int, int]):
        self.model = model
        self.grid = grid

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abstractmethod
    def prepare(self, pixel_values: torch.Tensor) -> object:
        """Per-image work done once (e.g. patch embeddings) for (B, C, H, W) ``pixel_values``."""

    @abstractmethod
    def logits(self, prepared: object, image_index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits (C, num_labels), float32, for one chunk of coalitions."""

    @abstractmethod
    def cost(self, kept: int) -> int:
        """Relative size of one row in a forward pass (tokens for token removal), for chunking."""

    def bytes_per_cost(self) -> int:
        """Working memory of a forward pass per unit of :meth:`cost` (bytes); 0 = unknown (no bound)."""
        return 0

    def full_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels), float32, on the whole images."""
        with torch.no_grad():
            return self.differentiable_logits(pixel_values.to(self.device, self.dtype)).float()

    def differentiable_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) of the model's own forward, differentiable in its activations (Grad-CAM)."""
        return self.model(pixel_values=pixel_values, **self.forward_kwargs).logits

    def gradient_target(self, logits: torch.Tensor, labels: torch.Tensor, reward: str) -> torch.Tensor:
        """What Grad-CAM differentiates per image (C,): the label's logit, the usual target of a classifier."""
        return logits.float().gather(1, labels.to(logits.device).unsqueeze(1)).squeeze(1)

    @property
    def forward_kwargs(self) -> dict:
        return {}


@dataclass
class TokenContext:
    table: torch.Tensor  # (B, S + N, D) special tokens then patch tokens, positions added: what coalitions gather
    resolution: tuple[int, int]  # input (height, width) in pixels
    encoder: FastEncoder | None = None  # fused inference path (None: the model's own forward)


class TokenRemoval(RemovalAdapter):
    """Token removal inside a MoXI ViT-family subclass (the paper's ViT-aware removal)."""

    masking = "token"
    needs_equal_counts = True

    #: The MoXI model classes this adapter explains.
    model_classes: tuple[type, ...] = (TokenRemovalClassifier,)

    def __init__(self, model: TokenRemovalClassifier, interpolate_pos_encoding: bool = False,
                 image_size: tuple[int, int] | None = None):
        if isinstance(model, TokenRemovalImageText) and not isinstance(model, self.model_classes):
            raise MoXIError(
                f"{type(model).__name__} is a zero-shot image-text model: it classifies by comparing the image "
                "with text, so it needs candidate labels (moxi_hf.zero_shot.ZeroShotRemoval)"
            )
        if not isinstance(model, self.model_classes):
            raise MoXIError(
                f"token removal needs a model with patch tokens (a MoXI ViT-family class), got "
                f"{type(model).__name__}; use masking='pixel' for this model"
            )
        backbone = model.backbone
        # The vision tower's config: the model's own for ViTs, ``vision_config`` for CLIP and SigLIP.
        size = image_size or as_pair(backbone.config.image_size)
        patch = as_pair(backbone.config.patch_size)
        super().__init__(model, (size[0] // patch[0], size[1] // patch[1]))
        # Backbones that always interpolate (DINOv2) take no such argument.
        self.interpolate_pos_encoding = interpolate_pos_encoding and backbone.embeddings_take_interpolate
        self.num_special_tokens = backbone.num_special_tokens
        #: Use the fused inference encoder (:mod:`moxi_hf.engine`) when the model's layers allow it.
        self.fast = True

    @property
    def forward_kwargs(self) -> dict:
        return {"interpolate_pos_encoding": True} if self.interpolate_pos_encoding else {}

    def prepare(self, pixel_values: torch.Tensor) -> TokenContext:
        with torch.no_grad():
            pixel_values = pixel_values.to(self.device, self.dtype)
            table = self.model.backbone.embed(pixel_values, interpolate_pos_encoding=self.interpolate_pos_encoding)
        patches = table.shape[1] - self.num_special_tokens
        if patches != self.n_patches:
            raise MoXIError(
                f"the image gives {patches} patches but the players expect {self.n_patches}; "
                "the image size does not match the model's"
            )
        encoder = fast_encoder(self.model) if self.fast else None
        return TokenContext(table, tuple(pixel_values.shape[-2:]), encoder)

    def cost(self, kept: int) -> int:
        # At least 1: a model without special tokens (I-JEPA) runs the empty coalition on no token.
        return max(1, kept + self.num_special_tokens)

    def bytes_per_cost(self) -> int:
        """Bytes per token live in one encoder layer: hidden, norm, residual, Q/K/V, context, MLP (~10 D + 2 M)."""
        config = self.model.backbone.config
        intermediate = getattr(config, "intermediate_size", None)
        intermediate = intermediate or int(config.hidden_size * getattr(config, "mlp_ratio", 4))
        return (10 * config.hidden_size + 2 * intermediate) * self.dtype.itemsize

    def logits(self, prepared: TokenContext, image_index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        count = keep.shape[0]
        kept = int(keep[0].sum()) if count else 0
        # Rows come ascending from nonzero(), so a coalition always gives the same token order.
        special = self.num_special_tokens
        # Rows of [special tokens, patches] to gather: special first, then the kept patches ascending.
        indices = torch.empty(count, special + kept, dtype=torch.long)
        indices[:, :special] = torch.arange(special)
        indices[:, special:] = keep.nonzero()[:, 1].reshape(count, kept) + special
        indices = indices.to(self.device)
        sequence = prepared.table[image_index.to(self.device).unsqueeze(1), indices]
        with torch.no_grad():
            return self.head_output(prepared, sequence, indices).float()

    def head_output(self, prepared: TokenContext, sequence: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Logits (C, num_labels) for gathered sequences (C, S + K, D) whose rows of the full sequence are ``indices``."""
        if prepared.encoder is not None:
            return prepared.encoder.logits(sequence)
        return self.model.classify_embeddings(
            sequence, token_index=indices, resolution=prepared.resolution,
            interpolate_pos_encoding=self.interpolate_pos_encoding,
        )


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    images = F.conv2d(padded, horizontal, groups=channels)
    padded = F.pad(images, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(padded, vertical, groups=channels)


@dataclass
class _PixelContext:
    pixel_values: torch.Tensor  # (B, C, H, W)
    baseline: torch.Tensor  # (B, C, H, W)


class PixelMasking(RemovalAdapter):
    """Model-agnostic removal: removed grid cells of ``pixel_values`` become a baseline.

    ``baseline``: ``"zero"`` (0 in normalised space, the original's choice), ``"mean"`` (each
    image's per-channel mean) or ``"blur"`` (a Gaussian-blurred copy, sigma = one cell's size / 2).
    """

    masking = "pixel"

    def __init__(self, model: torch.nn.Module, grid: tuple[int, int], baseline: str = "zero"):
        if baseline not in PIXEL_BASELINES:
            raise MoXIError(f"unknown pixel baseline {baseline!r}; choose one of {', '.join(PIXEL_BASELINES)}")
        super().__init__(model, grid)
        self.baseline = baseline

    def prepare(self, pixel_values: torch.Tensor) -> _PixelContext:
        pixel_values = pixel_values.to(self.device, self.dtype)
        if self.baseline == "zero":
            baseline = torch.zeros_like(pixel_values)
        elif self.baseline == "mean":
            baseline = pixel_values.mean(dim=(2, 3), keepdim=True).expand_as(pixel_values).contiguous()
        else:
            sigma = 0.5 * pixel_values.shape[-2] / self.grid[0]
            baseline = _gaussian_blur(pixel_values.float(), sigma).to(pixel_values.dtype)
        return _PixelContext(pixel_values, baseline)

    def cost(self, kept: int) -> int:
        return 1

    def logits(self, prepared: _PixelContext, image_index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        image_index = image_index.to(self.device)
        images = prepared.pixel_values[image_index]
        height, width = images.shape[-2:]
        cells = keep.to(self.device, images.dtype).reshape(-1, 1, *self.grid)
        mask = F.interpolate(cells, size=(height, width), mode="nearest")
        masked = images * mask + prepared.baseline[image_index] * (1 - mask)
        with torch.no_grad():
            return self.model(pixel_values=masked).logits.float()
