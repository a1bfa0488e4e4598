"""Grad-CAM and Grad-CAM++ baselines, on ViT/DeiT tokens or on a CNN's last feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import MoXIError
from ..removal import TokenRemoval
from ..value import ValueFunction
from .base import Attribution, Method, check_curve, order_by_score, register_method

__all__ = ["GradCAM", "GradCAMPlusPlus", "cam_activations"]


def _last_feature_map_module(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.nn.Module:
    """The last module (in execution order) whose output is a spatial (B, C, H, W) map, H·W > 1: a CNN's last stage."""
    seen: list[torch.nn.Module] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o: seen.append(m) if torch.is_tensor(o) and o.ndim == 4 and o.shape[-1] * o.shape[-2] > 1 else None)
        for module in model.modules()
        if module is not model
    ]
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise MoXIError(f"{type(model).__name__} has no 4-D feature map for Grad-CAM")
    return seen[-1]


def cam_activations(game: ValueFunction) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations A and gradients G = ∂z_y/∂A of the CAM layer, as (B, N, D) over the patch grid.

    ViT/DeiT: the last encoder layer's pre-attention LayerNorm output, patch tokens only. Other
    models: the last 4-D feature map, average-pooled onto the patch grid.
    """
    adapter = game.adapter
    model = adapter.model
    pixel_values = game.pixel_values.to(adapter.device, adapter.dtype)
    if isinstance(adapter, TokenRemoval):
        layer = model.backbone.layers[-1].layernorm_before
    else:
        layer = _last_feature_map_module(model, pixel_values)
    captured: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    hook = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(pixel_values=pixel_values, **adapter.forward_kwargs).logits
            target = logits.float().gather(1, game.labels.to(logits.device).unsqueeze(1)).sum()
            target.backward()
    finally:
        hook.remove()
        model.zero_grad(set_to_none=True)
    output = captured[-1]
    activations, gradients = output.detach().float(), output.grad.detach().float()
    if isinstance(adapter, TokenRemoval):
        special = adapter.num_special_tokens
        return activations[:, special:], gradients[:, special:]
    grid = adapter.grid
    activations = F.adaptive_avg_pool2d(activations, grid).flatten(2).transpose(1, 2)
    gradients = F.adaptive_avg_pool2d(gradients, grid).flatten(2).transpose(1, 2)
    return activations, gradients


def _projection(weighted: torch.Tensor) -> torch.Tensor:
    """First principal component of (N, D) weighted activations, per image (pytorch-grad-cam's eigen_smooth)."""
    centred = weighted - weighted.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (weighted @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)


class _CAM(Method):
    depends_on_curve = False

    def __init__(self, eigen_smooth: bool = False):
        self.eigen_smooth = eigen_smooth

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
        activations, gradients = cam_activations(game)
        weighted = activations * self.channel_weights(activations, gradients).unsqueeze(1)
        cam = _projection(weighted) if self.eigen_smooth else weighted.sum(dim=2)
        scores = game.players.from_patch_scores(cam.clamp(min=0))
        return Attribution(order_by_score(scores), scores)


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
