"""Self-context Shapley: each player's value alone (insertion) or its loss from the full image (deletion)."""

from __future__ import annotations

import torch

from ..cost import Cost
from ..options import check_curve
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["SelfContextShapley"]


@register_method
class SelfContextShapley(Method):
    """φ_i = v({i}) − v(∅) (insertion) or v(N) − v(N ∖ {i}) (deletion); P + 1 value calls per image.

    Insertion orders by descending v({i}); deletion by ascending v(N ∖ {i}) (the removal that
    hurts most first). Ties go to the lowest index.
    """

    name = "self-shapley"

    def cost(self, n_players: int, curve: str) -> Cost:
        if check_curve(curve) == "insertion":
            return Cost({0: 1, 1: n_players})
        return Cost({n_players: 1, n_players - 1: n_players})

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        insertion = check_curve(curve) == "insertion"
        n_images, n_players = game.n_images, game.n_players
        singles = torch.eye(n_players, dtype=torch.bool)
        if not insertion:
            singles = ~singles
        base = torch.full((1, n_players), not insertion, dtype=torch.bool)
        coalitions = torch.cat((base, singles)).repeat(n_images, 1)
        owner = torch.arange(n_images).repeat_interleave(n_players + 1)
        values = game(coalitions, owner).view(n_images, n_players + 1)
        reference, single = values[:, :1], values[:, 1:]
        if insertion:
            return Attribution(order_by_score(single, descending=True), single - reference)
        return Attribution(order_by_score(single, descending=False), reference - single)
