"""Insertion/deletion curves of an order, patches needed, and AUC."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import MoXIError
from ..options import check_curve
from ..value import ValueFunction

__all__ = ["CurveOutput", "auc", "curve_coalitions", "heatmap_from_order", "measure_curves", "measure_final_orders",
           "patches_needed"]


class CurveOutput(NamedTuple):
    probabilities: torch.Tensor  # (B, P + 1) p(label) after k = 0..P players inserted/deleted
    predictions: torch.Tensor  # (B, P + 1) predicted class at each k


def curve_coalitions(order: torch.Tensor, curve: str) -> torch.Tensor:
    """Coalitions along an order: (P,) order -> (P + 1, P) bool; row k keeps (insertion) or drops (deletion) order[:k]."""
    n_players = order.numel()
    rank = torch.empty(n_players, dtype=torch.long)
    rank[order] = torch.arange(n_players)
    inserted = rank.unsqueeze(0) < torch.arange(n_players + 1).unsqueeze(1)
    return inserted if curve == "insertion" else ~inserted


def measure_curves(game: ValueFunction, orders: torch.Tensor, curve: str,
                   images: torch.Tensor | None = None) -> CurveOutput:
    """Measure the insertion or deletion curve (k = 0..P, k = 0 included) of each order (R, P).

    ``images`` (R,): the image of ``game`` each order belongs to (default: order r is image r), so
    several orders of the same images (one per method) are measured in one call.
    """
    check_curve(curve)
    count, n_players = orders.shape
    images = torch.arange(game.n_images) if images is None else torch.as_tensor(images, dtype=torch.long)
    if images.shape != (count,) or n_players != game.n_players:
        raise MoXIError(f"orders {tuple(orders.shape)} do not match {game.n_images} images × {game.n_players} players")
    sorted_orders = orders.sort(dim=1).values
    if not torch.equal(sorted_orders, torch.arange(n_players).expand_as(orders)):
        raise MoXIError("curves need complete orders (every player exactly once); early-stopped orders have no curve")
    coalitions = torch.cat([curve_coalitions(order, curve) for order in orders])
    owner = images.repeat_interleave(n_players + 1)
    out = game.evaluate(coalitions, owner)
    return CurveOutput(out.probabilities.view(count, -1), out.predictions.view(count, -1))


def patches_needed(predictions: torch.Tensor, label: int, curve: str, n_players: int) -> int:
    """Players needed: inserted until the prediction is ``label`` / deleted until it is not.

    ``predictions`` are the predicted classes at k = 0..K; only k ≥ 1 counts (a change needs at
    least one player). Returns ``n_players`` when it never happens within the order.
    """
    hits = predictions[1:] == label if curve == "insertion" else predictions[1:] != label
    found = hits.nonzero()
    return int(found[0, 0]) + 1 if found.numel() else n_players


def heatmap_from_order(order: torch.Tensor, needed: int, n_players: int) -> torch.Tensor:
    """heat[order[j]] = needed − j for j < needed, 0 elsewhere (P,) float: a linear ramp over the players needed."""
    heat = torch.zeros(n_players)
    count = min(needed, order.numel())
    heat[order[:count]] = (needed - torch.arange(count)).float()
    return heat


def auc(curve):
    """Area under a curve sampled at k = 0..P: its mean over the P + 1 points (last dim).

    A tensor gives a float32 tensor; a list or NumPy array (aggregated curves) a float64 mean.
    """
    if isinstance(curve, torch.Tensor):
        return curve.float().mean(dim=-1)
    import numpy as np

    return np.asarray(curve, dtype=np.float64).mean(axis=-1)


def measure_final_orders(game: ValueFunction, attributions: dict, methods: list, curves: list[str]) -> dict:
    """(method name, curve) -> (p(label), predicted class) (B, K + 1) along each method's final order.

    ``attributions``: (method name, curve) -> :class:`moxi_hf.methods.Attribution`; ``methods``: the
    :class:`moxi_hf.Method` instances. All complete orders of a curve are measured in one call; an
    incomplete order (early stop) keeps the curve its method measured on its way.
    """
    measured = {}
    n_images, n_players = game.n_images, game.n_players
    for curve in curves:
        complete = []
        for method in methods:
            attribution = attributions[(method.name, curve)]
            if attribution.lengths is None and attribution.order.shape[1] == n_players:
                complete.append(method.name)
            elif method.depends_on_curve and attribution.curve_probabilities is not None:
                measured[(method.name, curve)] = (attribution.curve_probabilities, attribution.curve_predictions)
            else:
                raise MoXIError(f"{method.name} stopped early; its order has no {curve} curve")
        if not complete:
            continue
        orders = torch.cat([attributions[(name, curve)].order for name in complete])
        with torch.no_grad():
            out = measure_curves(game, orders, curve, torch.arange(n_images).repeat(len(complete)))
        for number, name in enumerate(complete):
            part = slice(number * n_images, (number + 1) * n_images)
            measured[(name, curve)] = (out.probabilities[part], out.predictions[part])
    return measured
