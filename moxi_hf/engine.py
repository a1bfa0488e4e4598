"""The fused inference encoder: a MoXI ViT's encoder + head rearranged for speed, built once per model.

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
from transformers.models.deit.modeling_deit import DeiTLayer
from transformers.models.vit.modeling_vit import ViTLayer
from transformers.models.vit_msn.modeling_vit_msn import ViTMSNLayer

from .modeling import TokenRemovalClassifier

__all__ = ["FastEncoder", "fast_encoder"]

_FUSABLE_LAYERS = (ViTLayer, DeiTLayer, ViTMSNLayer)


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
    """Inference-only encoder + head of a MoXI ViT, DeiT or ViT-MSN: the model's own computation, arranged for speed.

    The same operations as ``classify_embeddings`` (pre-LN layers: LayerNorm, attention, residual,
    LayerNorm, MLP, residual; final LayerNorm; head) with:

    - Q, K and V as one matrix product, attention by SDPA, no attention mask built;
    - on CPU, oneDNN linear kernels with the GELU or the residual add fused in (same results as
      separate ops in fp32, one pass over memory less each);
    - in the last layer, attention queries, MLP and final LayerNorm only for the special tokens
      (the head reads nothing else).

    Built only for pre-LN ViT layer classes (ViT, DeiT, ViT-MSN) in eval mode, for heads that read
    only the special tokens; :meth:`build` returns None otherwise and the model's own forward is used.
    Use :func:`fast_encoder` to get the one built for a model (cached).
    """

    def __init__(self, model: TokenRemovalClassifier, layers: list[_FastLayer], heads: int, head_dim: int,
                 scaling: float, num_special: int, fused: bool):
        self._model = weakref.ref(model)  # the cache is keyed by the model: no strong reference back
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

    @property
    def model(self) -> TokenRemovalClassifier:
        return self._model()

    @classmethod
    def build(cls, model: TokenRemovalClassifier) -> FastEncoder | None:
        backbone = model.backbone
        if model.training or not model.head_reads_special_only or not backbone.num_special_tokens:
            return None
        if not all(type(layer) in _FUSABLE_LAYERS for layer in backbone.encoder_layers()):
            return None
        if type(backbone.layernorm) is not torch.nn.LayerNorm or not len(backbone.encoder_layers()):
            return None
        layers = []
        with torch.no_grad():
            for layer in backbone.encoder_layers():
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
        first = backbone.encoder_layers()[0].attention
        parameter = next(model.parameters())
        fused = (parameter.device.type == "cpu" and torch.backends.mkldnn.is_available()
                 and parameter.dtype in (torch.float32, torch.bfloat16))
        return cls(model, layers, first.num_attention_heads, first.head_dim, float(first.scaling),
                   backbone.num_special_tokens, fused)

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


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _weights_key(model: torch.nn.Module) -> tuple:
    """What the engine's weights depend on: each parameter's storage, in-place version, device, dtype."""
    return (model.training,) + tuple(
        (parameter.data_ptr(), parameter._version, parameter.device, parameter.dtype)
        for parameter in model.parameters()
    )


def fast_encoder(model: TokenRemovalClassifier) -> FastEncoder | None:
    """The model's fused encoder (None when its layers do not allow one), built once and reused."""
    key = _weights_key(model)
    with _CACHE_LOCK:
        cached = _CACHE.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        encoder = FastEncoder.build(model)
        _CACHE[model] = (key, encoder)
        return encoder
