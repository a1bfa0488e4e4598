"""Attention rollout baseline (ViT-family token models, CLIP and SigLIP vision towers)."""

from __future__ import annotations

import copy

import torch

from ..cost import Cost
from ..errors import MoXIError
from ..loading import quiet_transformers
from ..modeling import TokenRemovalImageText
from ..options import check_curve
from ..removal import TokenRemoval
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["AttentionRollout", "rollout", "eager_view", "probe_attention"]


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
    with quiet_transformers():  # a classifier built from a CLIP/SigLIP config has no text tower to switch, and says so
        view.set_attn_implementation("eager")
    return view


@register_method
class AttentionRollout(Method):
    """Score of a patch = the CLS row of the rolled-out attention at that patch.

    Registers and DeiT's distillation token are special tokens: their columns are dropped. For
    a model without a CLS token (I-JEPA, SigLIP's classifier, whose heads average all tokens) the
    score is the mean of all rows of the rollout: the attention flow into the averaged output.
    Image-text models run their vision tower only: CLIP's CLS row (its image feature is CLS);
    SigLIP's pooling head attends over the last layer's tokens, so its score is that attention
    (mean over heads) times the rollout, the flow into the pooled feature.
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
        image_text = isinstance(model, TokenRemovalImageText)
        with torch.no_grad():
            pixel_values = game.pixel_values.to(adapter.device, adapter.dtype)
            # an image-text model: its vision tower alone (the text side has no attention over patches)
            runner = model.backbone if image_text else model
            outputs = runner(pixel_values=pixel_values, output_attentions=True, **adapter.forward_kwargs)
            if not outputs.attentions:
                raise MoXIError(f"{type(model).__name__} returned no attention weights")
            special = adapter.num_special_tokens
            joint = rollout(outputs.attentions)
            if special:
                rows = joint[:, 0, special:]
            elif image_text:  # SigLIP: the pooling head's probe attends over the last layer's tokens
                rows = (probe_attention(model.backbone.head, outputs.last_hidden_state).unsqueeze(1) @ joint)[:, 0]
            else:
                rows = joint.mean(dim=1)
        scores = game.players.from_patch_scores(rows.cpu())
        return Attribution(order_by_score(scores), scores)


def probe_attention(head: torch.nn.Module, hidden_state: torch.Tensor) -> torch.Tensor:
    """The attention (B, N) of a ``SiglipMultiheadAttentionPoolingHead``'s probe over tokens (B, N, D), mean over heads."""
    probe = head.probe.expand(hidden_state.shape[0], -1, -1)
    _, weights = head.attention(probe, hidden_state, hidden_state, need_weights=True, average_attn_weights=True)
    return weights[:, 0].float()
