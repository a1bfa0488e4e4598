"""Removal adapters: show a model only some patches of an image.

Two ways, one interface (:class:`RemovalAdapter`):

- :class:`TokenRemoval` (ViT/DeiT): patch tokens are embedded once per image, the kept ones are
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

from .errors import MoXIError
from .modeling import _TokenRemovalClassifier

__all__ = ["RemovalAdapter", "TokenRemoval", "PixelMasking", "PIXEL_BASELINES"]

PIXEL_BASELINES = ("zero", "mean", "blur")


class RemovalAdapter(ABC):
    """Turns ``keep`` masks over the patch grid into logits.

    ``grid`` is the patch grid (rows, cols) the masks refer to; ``keep`` is (C, N) bool with
    N = rows × cols, and ``image_index`` (C,) says which prepared image each row belongs to.
    """

    masking: str
    #: True when rows with different numbers of kept patches cannot share a forward pass.
    needs_equal_counts: bool = False

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
            pixel_values = pixel_values.to(self.device, self.dtype)
            return self.model(pixel_values=pixel_values, **self.forward_kwargs).logits.float()

    @property
    def forward_kwargs(self) -> dict:
        return {}


@dataclass
class _TokenContext:
    special: torch.Tensor  # (1, S, D) CLS (+ distillation) token with positions
    patches: torch.Tensor  # (B, N, D) patch tokens with positions
    table: torch.Tensor  # (B, S + N, D) special tokens then patch tokens: what a coalition gathers from
    encoder: _FastEncoder | None = None  # fused inference path (None: the model's own forward)


@dataclass
class _FastLayer:
    """One pre-LN encoder layer's weights, with Q, K and V fused into one matrix."""

    norm1: tuple[torch.Tensor, torch.Tensor | None, float]
    qkv: tuple[torch.Tensor, torch.Tensor | None]  # (3D, D), (3D,)
    out: tuple[torch.Tensor, torch.Tensor | None]  # (D, D), (D,)
    norm2: tuple[torch.Tensor, torch.Tensor | None, float]
    fc1: tuple[torch.Tensor, torch.Tensor | None]  # (M, D), (M,)
    activation: object
    fc2: tuple[torch.Tensor, torch.Tensor | None]  # (D, M), (D,)


def _norm(module: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    return (module.weight, module.bias, float(module.eps))


def _cat_bias(*linears: torch.nn.Linear) -> torch.Tensor | None:
    if all(linear.bias is None for linear in linears):
        return None
    return torch.cat([linear.bias if linear.bias is not None else torch.zeros_like(linear.weight[:, 0])
                      for linear in linears])


class _FastEncoder:
    """Inference-only encoder + head of a MoXI ViT/DeiT: the model's own computation, arranged for speed.

    The same operations as ``classify_embeddings`` (pre-LN layers: LayerNorm, attention, residual,
    LayerNorm, MLP, residual; final LayerNorm; head) with:

    - Q, K and V as one matrix product, attention by SDPA, no attention mask built;
    - on CPU, oneDNN linear kernels with the GELU or the residual add fused in (same results as
      separate ops in fp32, one pass over memory less each);
    - in the last layer, attention queries, MLP and final LayerNorm only for the special tokens
      (the head reads nothing else).

    Built only for the stock ViT/DeiT layer classes in eval mode; :meth:`build` returns None
    otherwise and the model's own forward is used.
    """

    def __init__(self, model: _TokenRemovalClassifier, layers: list[_FastLayer], heads: int, head_dim: int,
                 scaling: float, num_special: int, fused: bool):
        self.model = model
        self.layers = layers
        self.heads = heads
        self.head_dim = head_dim
        self.scaling = scaling
        self.num_special = num_special
        self.fused = fused
        #: Sequences up to this length use attention as matmul-softmax-matmul instead of SDPA. On CPU
        #: the flash kernel's per-block overhead dominates short sequences: matmuls are ~30 % faster
        #: in fp32 up to ~100 tokens and 1.5-2x faster in bf16 at any length (2 threads, ViT-Tiny).
        self.matmul_attention_max_length = 0
        if fused:
            self.matmul_attention_max_length = 1 << 30 if next(model.parameters()).dtype == torch.bfloat16 else 96

    @classmethod
    def build(cls, model: _TokenRemovalClassifier) -> _FastEncoder | None:
        from transformers.models.deit.modeling_deit import DeiTLayer
        from transformers.models.vit.modeling_vit import ViTLayer

        backbone = model.backbone
        if model.training or not all(type(layer) in (ViTLayer, DeiTLayer) for layer in backbone.layers):
            return None
        if type(backbone.layernorm) is not torch.nn.LayerNorm or not len(backbone.layers):
            return None
        layers = []
        with torch.no_grad():
            for layer in backbone.layers:
                attention, mlp = layer.attention, layer.mlp
                q, k, v = attention.q_proj, attention.k_proj, attention.v_proj
                if not all(type(m) is torch.nn.LayerNorm for m in (layer.layernorm_before, layer.layernorm_after)):
                    return None
                layers.append(_FastLayer(
                    norm1=_norm(layer.layernorm_before),
                    qkv=(torch.cat((q.weight, k.weight, v.weight)), _cat_bias(q, k, v)),
                    out=(attention.o_proj.weight, attention.o_proj.bias),
                    norm2=_norm(layer.layernorm_after),
                    fc1=(mlp.fc1.weight, mlp.fc1.bias),
                    # Exact (erf) GELU can be fused into the fc1 kernel; anything else runs as is.
                    activation="gelu" if getattr(mlp.activation_fn, "act", None) is F.gelu else mlp.activation_fn,
                    fc2=(mlp.fc2.weight, mlp.fc2.bias),
                ))
        first = backbone.layers[0].attention
        parameter = next(model.parameters())
        fused = (parameter.device.type == "cpu" and torch.backends.mkldnn.is_available()
                 and parameter.dtype in (torch.float32, torch.bfloat16))
        return cls(model, layers, first.num_attention_heads, first.head_dim, float(first.scaling),
                   backbone.embeddings.num_special_tokens, fused)

    def _linear(self, x: torch.Tensor, weights: tuple, activation: object = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """activation(x @ W^T + b) (+ residual) for 2-D ``x`` (T, in) -> (T, out)."""
        weight, bias = weights
        if self.fused and activation in (None, "gelu"):
            if residual is not None:
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation or "none", [], "none")
        out = F.linear(x, weight, bias)
        if activation == "gelu":
            out = F.gelu(out)
        elif activation is not None:
            out = activation(out)
        return out if residual is None else out + residual

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) for embedded sequences (B, L, D), special tokens first."""
        batch, length, width = sequence.shape
        heads, head_dim, special = self.heads, self.head_dim, self.num_special
        hidden = sequence.reshape(batch * length, width)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            normed = F.layer_norm(hidden, (width,), *layer.norm1)
            qkv = self._linear(normed, layer.qkv).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]
            if index == last:  # only the special tokens' outputs reach the head
                query = query[:, :, :special]
                hidden = hidden.view(batch, length, width)[:, :special].reshape(batch * special, width)
            if length <= self.matmul_attention_max_length:
                weights = torch.softmax(torch.matmul(query, key.transpose(-1, -2)) * self.scaling, dim=-1)
                context = torch.matmul(weights, value)
            else:
                context = F.scaled_dot_product_attention(query, key, value, scale=self.scaling)
            context = context.transpose(1, 2).reshape(hidden.shape[0], width)
            hidden = self._linear(context, layer.out, residual=hidden)
            normed = F.layer_norm(hidden, (width,), *layer.norm2)
            hidden = self._linear(self._linear(normed, layer.fc1, layer.activation), layer.fc2, residual=hidden)
        backbone = self.model.backbone
        return self.model.head(backbone.layernorm(hidden.view(batch, special, width)))


class TokenRemoval(RemovalAdapter):
    """Token removal inside a MoXI ViT/DeiT subclass (the paper's ViT-aware removal)."""

    masking = "token"
    needs_equal_counts = True

    def __init__(self, model: _TokenRemovalClassifier, interpolate_pos_encoding: bool = False,
                 image_size: tuple[int, int] | None = None):
        if not isinstance(model, _TokenRemovalClassifier):
            raise MoXIError(
                f"token removal needs a model with patch tokens (a MoXI ViT/DeiT class), got "
                f"{type(model).__name__}; use masking='pixel' for this model"
            )
        embeddings = model.backbone.embeddings
        size = image_size or tuple(embeddings.image_size)
        patch = embeddings.patch_embeddings.patch_size
        patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
        super().__init__(model, (size[0] // patch[0], size[1] // patch[1]))
        self.interpolate_pos_encoding = interpolate_pos_encoding
        self.num_special_tokens = embeddings.num_special_tokens
        #: Use the fused inference encoder (:class:`_FastEncoder`) when the model's layers allow it.
        self.fast = True

    @property
    def forward_kwargs(self) -> dict:
        return {"interpolate_pos_encoding": True} if self.interpolate_pos_encoding else {}

    def prepare(self, pixel_values: torch.Tensor) -> _TokenContext:
        with torch.no_grad():
            pixel_values = pixel_values.to(self.device, self.dtype)
            special, patches = self.model.backbone.embeddings.embed(
                pixel_values, interpolate_pos_encoding=self.interpolate_pos_encoding
            )
        if patches.shape[1] != self.n_patches:
            raise MoXIError(
                f"the image gives {patches.shape[1]} patches but the players expect {self.n_patches}; "
                "the image size does not match the model's"
            )
        table = torch.cat((special.expand(patches.shape[0], -1, -1), patches), dim=1)
        return _TokenContext(special, patches, table, _FastEncoder.build(self.model) if self.fast else None)

    def cost(self, kept: int) -> int:
        return kept + self.num_special_tokens

    def bytes_per_cost(self) -> int:
        """Bytes per token live in one encoder layer: hidden, norm, residual, Q/K/V, context, MLP (~10 D + 2 M)."""
        config = self.model.config
        return (10 * config.hidden_size + 2 * config.intermediate_size) * self.dtype.itemsize

    def logits(self, prepared: _TokenContext, image_index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        count = keep.shape[0]
        kept = int(keep[0].sum()) if count else 0
        # Rows come ascending from nonzero(), so a coalition always gives the same token order.
        special = self.num_special_tokens
        # Rows of [special tokens, patches] to gather: special first, then the kept patches ascending.
        indices = torch.empty(count, special + kept, dtype=torch.long)
        indices[:, :special] = torch.arange(special)
        indices[:, special:] = keep.nonzero()[:, 1].reshape(count, kept) + special
        sequence = prepared.table[image_index.to(self.device).unsqueeze(1), indices.to(self.device)]
        with torch.no_grad():
            if prepared.encoder is not None:
                return prepared.encoder.logits(sequence).float()
            return self.model.classify_embeddings(sequence).float()


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
