"""Attention rollout baseline (ViT-family token models)."""

from __future__ import annotations

import copy

import torch

from ..cost import Cost
from ..errors import MoXIError
from ..options import check_curve
from ..removal import TokenRemoval
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["AttentionRollout", "rollout", "eager_view"]


def rollout(attentions: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Attention rollout (B, L, L): per layer mean over heads, + identity, rows renormalised, multiplied up."""
    result = None
    for attention in attentions:
        mixed = attention.float().mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


def eager_view(model: torch.nn.Module) -> torch.nn.Module:
    """The same model (parameters and buffers shared, not copied) with its own config set to eager attention.

    SDPA returns no attention weights; switching the shared model's implementation would change
    it for every other caller (threads included), so rollout runs on this view instead.
    """
    memo = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
    view = copy.deepcopy(model, memo)
    view.set_attn_implementation("eager")
    return view


@register_method
class AttentionRollout(Method):
    """Score of a patch = the CLS row of the rolled-out attention at that patch.

    Registers and DeiT's distillation token are special tokens: their columns are dropped. For
    a model without a CLS token (I-JEPA, whose head averages all tokens) the score is the mean of
    all rows of the rollout: the attention flow into the averaged output.
    """

    name = "attention-rollout"
    depends_on_curve = False

    @classmethod
    def unsupported_reason(cls, adapter) -> str | None:
        if isinstance(adapter, TokenRemoval):
            return None
        return "attention-rollout needs a ViT-family model with token removal (masking token); this model has no attention maps"

    def cost(self, n_players: int, curve: str) -> Cost:
        check_curve(curve)
        return Cost()  # one forward pass of the model with attention weights, no coalition

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
        adapter = game.adapter
        reason = self.unsupported_reason(adapter)
        if reason:
            raise MoXIError(reason)
        model = eager_view(adapter.model)
        with torch.no_grad():
            pixel_values = game.pixel_values.to(adapter.device, adapter.dtype)
            outputs = model(pixel_values=pixel_values, output_attentions=True, **adapter.forward_kwargs)
        if not outputs.attentions:
            raise MoXIError(f"{type(model).__name__} returned no attention weights")
        special = adapter.num_special_tokens
        joint = rollout(outputs.attentions)
        rows = joint[:, 0, special:] if special else joint.mean(dim=1)
        scores = game.players.from_patch_scores(rows.cpu())
        return Attribution(order_by_score(scores), scores)
