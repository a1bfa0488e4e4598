"""Attention rollout baseline (ViT/DeiT only)."""

from __future__ import annotations

import torch

from ..errors import MoXIError
from ..removal import TokenRemoval
from ..value import ValueFunction
from .base import Attribution, Method, check_curve, order_by_score, register_method

__all__ = ["AttentionRollout", "rollout"]


def rollout(attentions: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Attention rollout (B, L, L): per layer mean over heads, + identity, rows renormalised, multiplied up."""
    result = None
    for attention in attentions:
        mixed = attention.float().mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


@register_method
class AttentionRollout(Method):
    """Score of a patch = the CLS row of the rolled-out attention at that patch (needs eager attention)."""

    name = "attention-rollout"
    depends_on_curve = False

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
        adapter = game.adapter
        if not isinstance(adapter, TokenRemoval):
            raise MoXIError("attention-rollout needs a ViT/DeiT model (token masking); this model has no attention maps")
        model = adapter.model
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")  # SDPA returns no attention weights
        try:
            with torch.no_grad():
                pixel_values = game.pixel_values.to(adapter.device, adapter.dtype)
                outputs = model(pixel_values=pixel_values, output_attentions=True, **adapter.forward_kwargs)
        finally:
            model.set_attn_implementation(previous)
        if not outputs.attentions:
            raise MoXIError(f"{type(model).__name__} returned no attention weights")
        cls_row = rollout(outputs.attentions)[:, 0, adapter.num_special_tokens :].cpu()
        scores = game.players.from_patch_scores(cls_row)
        return Attribution(order_by_score(scores), scores)
