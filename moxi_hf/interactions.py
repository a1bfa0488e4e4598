"""Which players worked together: the gain split along MoXI's order and pairwise interaction maps.

Conventions (v is the value function's reward; see docs/interactions.md):

- Insertion, the k-th player i of the order joining the players S taken before it:
  ``gain = v(S ∪ {i}) − v(S)``, ``self = v({i}) − v(∅)``, ``interaction = gain − self``;
  ``I(i, j) = v({i, j}) − v({i}) − v({j}) + v(∅)``.
- Deletion, as a loss (like MoXI's deletion scores), i removed from the players R still present:
  ``gain = v(R) − v(R ∖ {i})``, ``self = v(N) − v(N ∖ {i})``, ``interaction = gain − self``;
  ``I(i, j) = v(N) − v(N ∖ {i}) − v(N ∖ {j}) + v(N ∖ {i, j})``.

For a game with only pairwise terms, insertion gives ``interaction = Σ_{j taken before i} I(i, j)``
and deletion ``interaction = −Σ_{j removed before i} I(i, j)``: removing a partner first takes the
synergy away, so less is left to lose when i goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .cost import Cost
from .errors import MoXIError
from .options import DEFAULT_INTERACTION_TOP, check_curve
from .value import ValueFunction

__all__ = ["PairwiseInteractions", "attach_interactions", "gain_split", "interaction_share", "interactions_cost",
           "pairwise_interactions", "summarise_interaction_share"]

DEFAULT_TOP_K = DEFAULT_INTERACTION_TOP


def gain_split(attribution, curve: str) -> dict[str, torch.Tensor]:
    """``{total, self, interaction}``, each (B, K) float, along the order of a MoXI attribution.

    Computed from the values the greedy already measured (``base_values``, ``first_values``,
    ``step_values`` of :class:`~moxi_hf.methods.moxi.MoXIAttribution`): no forward pass.
    ``total`` equals MoXI's score of each player of the order. Entries past an image's length
    (early stop) are NaN.
    """
    insertion = check_curve(curve) == "insertion"
    steps = getattr(attribution, "step_values", None)
    if steps is None or getattr(attribution, "first_values", None) is None:
        raise MoXIError("the gain split needs the values measured by the MoXI greedy (method 'moxi')")
    order = attribution.order
    taken = order >= 0
    singles = attribution.first_values.gather(1, order.clamp(min=0))
    base = attribution.base_values.unsqueeze(1)
    total = steps[:, 1:] - steps[:, :-1] if insertion else steps[:, :-1] - steps[:, 1:]
    alone = singles - base if insertion else base - singles
    nan = torch.tensor(float("nan"))
    total, alone = torch.where(taken, total, nan), torch.where(taken, alone, nan)
    return {"total": total, "self": alone, "interaction": total - alone}


class PairwiseInteractions(NamedTuple):
    """The interaction map of one image: ``players`` (K,) long, ranks 1..K of the order, and
    ``matrix`` (K, K) float, symmetric, ``matrix[a, b] = I(players[a], players[b])``, zero diagonal."""

    players: torch.Tensor
    matrix: torch.Tensor


def pairwise_interactions(
    game: ValueFunction,
    order: torch.Tensor,
    curve: str,
    top_k: int = DEFAULT_TOP_K,
    *,
    lengths: torch.Tensor | None = None,
    base_values: torch.Tensor | None = None,
    first_values: torch.Tensor | None = None,
) -> list[PairwiseInteractions]:
    """I(i, j) among the first ``top_k`` players of each image's order, for any method's order.

    ``order`` (B, L) long, with ``lengths`` (B,) valid entries per row when the method stopped
    early (K is then capped at each image's length). One batched call of ``game`` evaluates
    the K(K − 1)/2 pairs of every image, plus v(∅)/v(N) and the K singletons unless they are given:
    ``base_values`` (B,) and ``first_values`` (B, P) as measured by MoXI's first step.
    """
    insertion = check_curve(curve) == "insertion"
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MoXIError(f"top_k must be a positive integer, got {top_k!r}")
    order = torch.as_tensor(order, dtype=torch.long)
    if order.ndim != 2 or order.shape[0] != game.n_images:
        raise MoXIError(f"order must be (images, players) with {game.n_images} rows, got {tuple(order.shape)}")
    n_players = game.n_players
    counts = torch.full((game.n_images,), order.shape[1]) if lengths is None else torch.as_tensor(lengths).long()
    tops = [order[b, : min(top_k, int(counts[b]))] for b in range(game.n_images)]
    for top in tops:
        if top.numel() and (int(top.min()) < 0 or int(top.max()) >= n_players or top.unique().numel() != top.numel()):
            raise MoXIError(f"an order must list distinct players in 0..{n_players - 1}, got {top.tolist()}")
    known = base_values is not None and first_values is not None

    # Coalitions are built as "players touched" (taken for insertion, removed for deletion) and flipped at the end.
    touched, owner = [], []
    for b, top in enumerate(tops):
        k = top.numel()
        first, second = torch.triu_indices(k, k, offset=1)
        rows = torch.zeros(first.numel(), n_players, dtype=torch.bool)
        rows[torch.arange(first.numel()), top[first]] = True
        rows[torch.arange(first.numel()), top[second]] = True
        if not known:
            singles = torch.zeros(k + 1, n_players, dtype=torch.bool)
            singles[torch.arange(1, k + 1), top] = True  # row 0: nothing touched
            rows = torch.cat([singles, rows])
        touched.append(rows)
        owner.append(torch.full((rows.shape[0],), b, dtype=torch.long))
    touched_all = torch.cat(touched)
    values = game(touched_all if insertion else ~touched_all, torch.cat(owner)) if touched_all.numel() else None

    results, offset = [], 0
    for b, top in enumerate(tops):
        k = top.numel()
        first, second = torch.triu_indices(k, k, offset=1)
        if known:
            base, single = base_values[b], first_values[b, top]
        else:
            base, single = values[offset], values[offset + 1 : offset + 1 + k]
            offset += k + 1
        pairs = values[offset : offset + first.numel()] if first.numel() else torch.empty(0)
        offset += first.numel()
        matrix = torch.zeros(k, k)
        # Same four terms for both curves: v(∅)/v(N), the singles and the pairs in "touched" form.
        matrix[first, second] = pairs - single[first] - single[second] + base
        results.append(PairwiseInteractions(top.clone(), matrix + matrix.T))
    return results


def interactions_cost(n_players: int, curve: str, top_k: int = DEFAULT_TOP_K, known_singles: bool = False) -> Cost:
    """The coalitions :func:`pairwise_interactions` evaluates for one image: the K(K − 1)/2 pairs, plus v(∅)/v(N)
    and the K singletons unless they are known (MoXI measured them); K = min(top_k, P)."""
    insertion = check_curve(curve) == "insertion"
    k = min(top_k, n_players)
    touched = {2: k * (k - 1) // 2} if k > 1 else {}
    if not known_singles:
        touched.update({0: 1, 1: k})
    return Cost({size if insertion else n_players - size: count for size, count in touched.items() if count})


def interaction_share(gains: Mapping[str, Sequence[float]], patches_needed: int) -> float:
    """Share of the gain that came from interaction among the first ``patches_needed`` players.

    ``Σ|interaction| / (Σ|self| + Σ|interaction|)`` over those players (absolute values, so that
    negative gains of the log-odds do not cancel positive ones): 0 when every player's gain is its
    own, 1 when no player is worth anything alone. NaN when all those terms are zero.
    """
    if patches_needed < 1:
        raise MoXIError(f"patches_needed must be at least 1, got {patches_needed}")
    alone = np.abs(np.asarray(gains["self"], dtype=np.float64)[:patches_needed])
    together = np.abs(np.asarray(gains["interaction"], dtype=np.float64)[:patches_needed])
    total = alone.sum() + together.sum()
    return float(together.sum() / total) if total > 0 else math.nan


def summarise_interaction_share(curves: dict, rows: Sequence[Mapping]) -> dict:
    """Add ``interaction_share`` (mean of :func:`interaction_share` over the images) and
    ``interaction_share_images`` (how many images it averages) to ``curves[method][curve]`` for every
    method × curve whose rows have ``gains``. Rows with no patch needed, or whose terms are all zero,
    are left out. Returns ``curves``.
    """
    shares: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        gains, needed = row.get("gains"), int(row.get("patches_needed") or 0)
        if not gains or needed < 1:
            continue
        share = interaction_share(gains, needed)
        if not math.isnan(share):
            shares.setdefault((row["method"], row["curve"]), []).append(share)
    for (method, curve), values in shares.items():
        entry = curves.get(method, {}).get(curve)
        if entry is not None:
            entry["interaction_share"] = float(np.mean(values))
            entry["interaction_share_images"] = len(values)
    return curves


def attach_interactions(explanations: list, game: ValueFunction, attribution, curve: str,
                        top_k: int = DEFAULT_TOP_K) -> None:
    """Fill ``interactions`` (any method) and ``gains`` (MoXI) of the explanations of ``game``'s images."""
    measured = getattr(attribution, "first_values", None) is not None
    maps = pairwise_interactions(
        game, attribution.order, curve, top_k, lengths=attribution.lengths,
        base_values=attribution.base_values if measured else None,
        first_values=attribution.first_values if measured else None,
    )
    split = gain_split(attribution, curve) if measured else None
    for index, (explanation, found) in enumerate(zip(explanations, maps)):
        explanation.interactions = {"players": found.players.tolist(), "matrix": found.matrix.tolist()}
        if split is not None:
            length = len(explanation.order)
            explanation.gains = {key: value[index, :length].tolist() for key, value in split.items()}
