"""The fused inference encoder: a MoXI model's encoder + head rearranged for speed, built once per model.

:func:`fast_encoder` returns the engine of a model, rebuilt only when the model's parameters move
(device, dtype), are replaced or are modified in place (tensor version counters), or when it
switches to training mode.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.models.deit.modeling_deit import DeiTLayer
from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer
from transformers.models.vit.modeling_vit import ViTLayer
from transformers.models.vit_msn.modeling_vit_msn import ViTMSNLayer

from .modeling import TokenRemovalClassifier, TokenRemovalImageText

__all__ = ["FastEncoder", "fast_encoder"]

_VIT_LAYERS = (ViTLayer, DeiTLayer, ViTMSNLayer)
_CLIP_LAYERS = (CLIPEncoderLayer, SiglipEncoderLayer)


def _layer_parts(layer: torch.nn.Module) -> tuple | None:
    """(norm1, (q, k, v, out), norm2, mlp, heads, head_dim, scaling) of a pre-LN layer the engine can fuse, or None."""
    if type(layer) in _VIT_LAYERS:
        attention = layer.attention
        projections = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
        return (layer.layernorm_before, projections, layer.layernorm_after, layer.mlp,
                attention.num_attention_heads, attention.head_dim, attention.scaling)
    if type(layer) in _CLIP_LAYERS:
        attention = layer.self_attn
        projections = (attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj)
        return (layer.layer_norm1, projections, layer.layer_norm2, layer.mlp,
                attention.num_heads, attention.head_dim, attention.scale)
    return None


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


class FastEncoder:
    """Inference-only encoder + head of a MoXI ViT, DeiT, ViT-MSN, CLIP or SigLIP: the model's own computation,
    arranged for speed.

    The same operations as ``classify_embeddings`` / ``image_features_from_embeddings`` (pre-LN
    layers: LayerNorm, attention, residual, LayerNorm, MLP, residual; the backbone's final norm;
    head) with:

    - Q, K and V as one matrix product, attention by SDPA, no attention mask built;
    - on CPU, oneDNN linear kernels with the GELU or the residual add fused in (same results as
      separate ops in fp32, one pass over memory less each);
    - when the head reads only the special tokens (ViT, DeiT, CLIP's zero-shot feature), in the last
      layer attention queries, MLP and final norm only for those tokens.

    Built only for pre-LN layer classes (ViT, DeiT, ViT-MSN, CLIP, SigLIP) in eval mode;
    :meth:`build` returns None otherwise and the model's own forward is used. Use
    :func:`fast_encoder` to get the one built for a model (cached).
    """

    def __init__(self, model: TokenRemovalClassifier | TokenRemovalImageText, layers: list[_FastLayer], heads: int,
                 head_dim: int, scaling: float, num_special: int | None, fused: bool):
        self._model = weakref.ref(model)  # the cache is keyed by the model: no strong reference back
        self.layers = layers
        self.heads = heads
        self.head_dim = head_dim
        self.scaling = scaling
        #: Leading tokens the head reads (the last layer computes only these), or None for all of them.
        self.num_special = num_special
        self.fused = fused
        #: Sequences up to this length use attention as matmul-softmax-matmul instead of SDPA. On CPU
        #: the flash kernel's per-block overhead dominates short sequences: matmuls are ~30 % faster
        #: in fp32 up to ~100 tokens and 1.5-2x faster in bf16 at any length (2 threads, ViT-Tiny).
        self.matmul_attention_max_length = 0
        if fused:
            self.matmul_attention_max_length = 1 << 30 if next(model.parameters()).dtype == torch.bfloat16 else 96

    @property
    def model(self) -> TokenRemovalClassifier | TokenRemovalImageText:
        return self._model()

    @classmethod
    def build(cls, model: TokenRemovalClassifier | TokenRemovalImageText) -> FastEncoder | None:
        backbone = model.backbone
        if model.training or not len(backbone.encoder_layers()):
            return None
        if model.head_reads_special_only and not backbone.num_special_tokens:
            return None
        parts = [_layer_parts(layer) for layer in backbone.encoder_layers()]
        if any(part is None for part in parts):
            return None
        layers = []
        with torch.no_grad():
            for norm1, (q, k, v, out), norm2, mlp, *_ in parts:
                if not all(type(m) is torch.nn.LayerNorm for m in (norm1, norm2)):
                    return None
                layers.append(_FastLayer(
                    norm1=_norm(norm1),
                    qkv=(torch.cat((q.weight, k.weight, v.weight)), _cat_bias(q, k, v)),
                    out=(out.weight, out.bias),
                    norm2=_norm(norm2),
                    fc1=(mlp.fc1.weight, mlp.fc1.bias),
                    # Exact (erf) GELU can be fused into the fc1 kernel; anything else runs as is.
                    activation="gelu" if getattr(mlp.activation_fn, "act", None) is F.gelu else mlp.activation_fn,
                    fc2=(mlp.fc2.weight, mlp.fc2.bias),
                ))
        heads, head_dim, scaling = parts[0][4:]
        parameter = next(model.parameters())
        fused = (parameter.device.type == "cpu" and torch.backends.mkldnn.is_available()
                 and parameter.dtype in (torch.float32, torch.bfloat16))
        num_special = backbone.num_special_tokens if model.head_reads_special_only else None
        return cls(model, layers, heads, head_dim, float(scaling), num_special, fused)

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
        """The head's output for embedded sequences (B, L, D), special tokens first: logits (B, num_labels) of
        a classifier, image features (B, projection) of an image-text model."""
        batch, length, width = sequence.shape
        heads, head_dim = self.heads, self.head_dim
        read = length if self.num_special is None else self.num_special  # tokens the head reads
        hidden = sequence.reshape(batch * length, width)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers if length else ()):  # no token: nothing to attend to
            normed = F.layer_norm(hidden, (width,), *layer.norm1)
            qkv = self._linear(normed, layer.qkv).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]
            if index == last and read < length:  # only the special tokens' outputs reach the head
                query = query[:, :, :read]
                hidden = hidden.view(batch, length, width)[:, :read].reshape(batch * read, width)
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
        return self.model.head(backbone.final_norm(hidden.view(batch, min(read, length), width)))


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _weights_key(model: torch.nn.Module) -> tuple:
    """What the engine's weights depend on: each parameter's storage, in-place version, device, dtype."""
    return (model.training,) + tuple(
        (parameter.data_ptr(), parameter._version, parameter.device, parameter.dtype)
        for parameter in model.parameters()
    )


def fast_encoder(model: TokenRemovalClassifier | TokenRemovalImageText) -> FastEncoder | None:
    """The model's fused encoder (None when its layers do not allow one), built once and reused."""
    key = _weights_key(model)
    with _CACHE_LOCK:
        cached = _CACHE.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        encoder = FastEncoder.build(model)
        _CACHE[model] = (key, encoder)
        return encoder
