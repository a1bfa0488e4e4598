"""Grad-CAM and Grad-CAM++ baselines, on a ViT-family model's tokens or on a CNN/Swin's last feature map."""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from ..cost import Cost
from ..errors import MoXIError
from ..options import check_curve
from ..removal import TokenRemoval
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["GradCAM", "GradCAMPlusPlus", "cam_activations", "cam_layer"]


def _is_feature_map(module: torch.nn.Module, output: object) -> bool:
    """A (B, C, H, W) map with H·W > 1, or a LayerNorm's (B, L, C) tokens on a square grid (Swin's last stage)."""
    if not torch.is_tensor(output):
        return False
    if output.ndim == 4 and not isinstance(module, torch.nn.LayerNorm):
        return output.shape[-1] * output.shape[-2] > 1
    if output.ndim == 3 and isinstance(module, torch.nn.LayerNorm):
        side = math.isqrt(output.shape[1])
        return output.shape[1] > 1 and side * side == output.shape[1]
    return False


def _as_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) unchanged; (B, L, C) tokens on a square grid -> (B, C, √L, √L)."""
    if tokens.ndim == 4:
        return tokens
    side = math.isqrt(tokens.shape[1])
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _last_feature_map_module(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.nn.Module:
    """The last module (in execution order) whose output is a spatial (B, C, H, W) map, H·W > 1.

    For a CNN this is its last stage; for Swin-like models, whose stages output token sequences,
    the last 4-D map is the reshaped output of the last stage when the model exposes one.
    """
    seen: list[torch.nn.Module] = []
    caller = threading.get_ident()

    def record(module, inputs, output):
        if threading.get_ident() == caller and _is_feature_map(module, output):
            seen.append(module)

    hooks = [module.register_forward_hook(record) for module in model.modules() if module is not model]
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise MoXIError(f"{type(model).__name__} has no 4-D feature map for Grad-CAM")
    return seen[-1]


def cam_layer(adapter, pixel_values: torch.Tensor) -> tuple[torch.nn.Module, str]:
    """The layer Grad-CAM reads and its qualified name in the model.

    Token models: the last encoder layer's first LayerNorm (its output is that layer's view of
    every token). Other models: the last 4-D feature map (see :func:`_last_feature_map_module`).
    """
    model = adapter.model
    if isinstance(adapter, TokenRemoval):
        last = model.backbone.encoder_layers()[-1]
        layer = next(module for module in last.children() if isinstance(module, torch.nn.LayerNorm))
    else:
        layer = _last_feature_map_module(model, pixel_values)
    name = next(name for name, module in model.named_modules() if module is layer)
    return layer, name


def cam_activations(game: ValueFunction) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Activations A and gradients G = ∂t/∂A of the CAM layer, as (B, N, D) over the patch grid, and its name.

    t is the adapter's :meth:`~moxi_hf.removal.RemovalAdapter.gradient_target`: the label's logit z_y of a
    classifier, the chosen reward of a zero-shot model (for CLIP, the label against the other candidates).

    The model is left as it was: the capturing hook only records this thread's forward and is
    removed before returning; gradients are taken with ``torch.autograd.grad`` (nothing is
    accumulated into the parameters' ``.grad``).
    """
    adapter = game.adapter
    pixel_values = game.pixel_values.to(adapter.device, adapter.dtype)
    layer, name = cam_layer(adapter, pixel_values)
    captured: list[torch.Tensor] = []
    caller = threading.get_ident()

    def keep(module, inputs, output):
        if threading.get_ident() == caller:  # another thread may run the same model meanwhile
            captured.append(output)

    hook = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = adapter.differentiable_logits(pixel_values)
            output = captured[-1]
            target = adapter.gradient_target(logits, game.labels.to(logits.device), game.reward).sum()
            (gradient,) = torch.autograd.grad(target, output)
    finally:
        hook.remove()
    activations, gradients = output.detach().float(), gradient.detach().float()
    if isinstance(adapter, TokenRemoval):
        special = adapter.num_special_tokens
        return activations[:, special:], gradients[:, special:], name
    grid = adapter.grid
    activations, gradients = _as_map(activations), _as_map(gradients)
    activations = F.adaptive_avg_pool2d(activations, grid).flatten(2).transpose(1, 2)
    gradients = F.adaptive_avg_pool2d(gradients, grid).flatten(2).transpose(1, 2)
    return activations, gradients, name


def _projection(weighted: torch.Tensor) -> torch.Tensor:
    """First principal component of (N, D) weighted activations, per image (pytorch-grad-cam's eigen_smooth)."""
    centred = weighted - weighted.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (weighted @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)


class _CAM(Method):
    depends_on_curve = False

    def __init__(self, eigen_smooth: bool = False):
        self.eigen_smooth = eigen_smooth

    @classmethod
    def unsupported_reason(cls, adapter) -> str | None:
        """Token models: always (the last encoder layer's tokens). Others need a convolution, whose output is
        the 4-D feature map :func:`cam_layer` reads (CNNs; Swin and ViTs through their patch embedding)."""
        if isinstance(adapter, TokenRemoval):
            return None
        if any(isinstance(module, torch.nn.Conv2d) for module in adapter.model.modules()):
            return None
        return (f"{cls.name} needs a 4-D feature map (a convolution) or a ViT-family model with token removal; "
                f"{type(adapter.model).__name__} has neither")

    def cost(self, n_players: int, curve: str) -> Cost:
        check_curve(curve)
        return Cost()  # one forward and backward pass of the model, no coalition

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
        activations, gradients, layer = cam_activations(game)
        weighted = activations * self.channel_weights(activations, gradients).unsqueeze(1)
        cam = _projection(weighted) if self.eigen_smooth else weighted.sum(dim=2)
        scores = game.players.from_patch_scores(cam.clamp(min=0))
        return Attribution(order_by_score(scores), scores, settings={"cam_layer": layer})


@register_method
class GradCAM(_CAM):
    """Grad-CAM: channel weights = mean gradient over patches; score = ReLU(Σ_d w_d A_d) per patch."""

    name = "gradcam"

    def channel_weights(self, activations, gradients):
        return gradients.mean(dim=1)


@register_method
class GradCAMPlusPlus(_CAM):
    """Grad-CAM++: weights Σ_patches α·ReLU(G) with α = G² / (2G² + Σ_patches A · G³)."""

    name = "gradcam++"

    def channel_weights(self, activations, gradients):
        squared, cubed = gradients.pow(2), gradients.pow(3)
        denominator = 2 * squared + activations.sum(dim=1, keepdim=True) * cubed
        alpha = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        return (alpha * gradients.clamp(min=0)).sum(dim=1)
