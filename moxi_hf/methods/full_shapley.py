"""Full-context Shapley values: permutation sampling (default), the paper's sampler, or exact enumeration.

Shapley value of player i: φ_i = Σ_{S ⊆ N ∖ {i}} |S|! (P − |S| − 1)! / P! · (v(S ∪ {i}) − v(S)),
the mean of i's marginal contribution over the P! orders in which the players can join.
"""

from __future__ import annotations

import math

import torch

from ..cost import Cost
from ..errors import MoXIError
from ..options import SHAPLEY_SAMPLERS, check_curve
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["FullContextShapley", "MAX_EXACT_PLAYERS", "all_coalitions", "permutation_coalitions", "sample_contexts",
           "sample_permutations", "shapley_from_table"]

#: the most players ``sampler="exact"`` enumerates (2^12 = 4,096 coalitions per image)
MAX_EXACT_PLAYERS = 12
#: coalitions per value-function call: images are grouped, or one image's coalitions split, to about this many
_ROWS_PER_CALL = 1 << 16


def _context_sizes(n_players: int, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """Sizes (P, M, 1) long of the contexts: ⌊(P − 1) r⌋, r ~ U(0, 1) (the generator's first draw)."""
    ratios = torch.rand(n_players, num_samples, 1, generator=generator)
    return torch.floor((n_players - 1) * ratios).long()


def sample_contexts(n_players: int, num_samples: int, seed: int) -> torch.Tensor:
    """Random contexts (P, M, P) bool: for player i and sample m, a subset of the others of size ⌊(P − 1) r⌋, r ~ U(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = _context_sizes(n_players, num_samples, generator)
    keys = torch.rand(n_players, num_samples, n_players, generator=generator)
    keys[torch.arange(n_players), :, torch.arange(n_players)] = 2.0  # never pick i itself
    ranks = keys.argsort(dim=2).argsort(dim=2)
    return ranks < sizes


def sample_permutations(n_players: int, num_samples: int, seed: int) -> torch.Tensor:
    """M orders of the players (M, P) long, in antithetic pairs: uniform random permutations, each followed by its reverse.

    With M odd the last permutation has no partner. Every row is a uniform random permutation.
    """
    generator = torch.Generator().manual_seed(seed)
    forward = torch.rand(-(-num_samples // 2), n_players, generator=generator).argsort(dim=1)
    return torch.stack((forward, forward.flip(1)), dim=1).reshape(-1, n_players)[:num_samples]


def permutation_coalitions(permutations: torch.Tensor) -> torch.Tensor:
    """The proper, non-empty prefixes of each order (M, P), size-major: (P − 1, M, P) bool,
    ``[k − 1, m]`` = the first k players of order m."""
    n_players = permutations.shape[1]
    position = permutations.argsort(dim=1)  # position[m, i]: where player i joins in order m
    sizes = torch.arange(1, n_players).view(-1, 1, 1)
    return position.unsqueeze(0) < sizes


def all_coalitions(n_players: int) -> torch.Tensor:
    """Every coalition (2^P, P) bool; row s holds player i when bit i of s is set."""
    bits = torch.arange(n_players)
    return (torch.arange(1 << n_players).unsqueeze(1) >> bits) & 1 == 1


def shapley_from_table(values: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values (..., P) float64 from v over :func:`all_coalitions` order (..., 2^P)."""
    n_players = int(values.shape[-1]).bit_length() - 1
    if values.shape[-1] != 1 << n_players:
        raise MoXIError(f"a table of every coalition has 2^P entries, got {values.shape[-1]}")
    values = values.double()
    masks = torch.arange(1 << n_players)
    sizes = all_coalitions(n_players).sum(dim=1)
    weights = torch.tensor([1.0 / (n_players * math.comb(n_players - 1, size)) if size < n_players else 0.0
                            for size in range(n_players + 1)], dtype=torch.float64)
    shapley = []
    for player in range(n_players):
        without = masks[(masks >> player) & 1 == 0]
        gains = values[..., without | (1 << player)] - values[..., without]
        shapley.append((gains * weights[sizes[without]]).sum(dim=-1))
    return torch.stack(shapley, dim=-1)


def _values_for_every_image(game: ValueFunction, coalitions: torch.Tensor) -> torch.Tensor:
    """v of the same coalitions (R, P) for every image of ``game``: (B, R) float64.

    Several images share a call when their coalitions are few; one image's are split when they are
    many (the value function then still groups rows of equal size into forward passes).
    """
    count = coalitions.shape[0]
    values = torch.empty(game.n_images, count, dtype=torch.float64)
    if count >= _ROWS_PER_CALL:
        for image in range(game.n_images):
            for start in range(0, count, _ROWS_PER_CALL):
                part = coalitions[start : start + _ROWS_PER_CALL]
                owner = torch.full((part.shape[0],), image, dtype=torch.long)
                values[image, start : start + part.shape[0]] = game(part, owner).double()
        return values
    per_call = _ROWS_PER_CALL // count
    for first in range(0, game.n_images, per_call):
        images = torch.arange(first, min(game.n_images, first + per_call))
        owner = images.repeat_interleave(count)
        values[images] = game(coalitions.repeat(images.numel(), 1), owner).double().view(images.numel(), count)
    return values


@register_method
class FullContextShapley(Method):
    """Shapley values φ over all contexts; order: descending φ, ties to the lowest index, the same for both curves.

    ``sampler``:

    - ``"permutation"`` (default): ``num_samples`` = M random orders of the players in antithetic
      pairs (an order and its reverse); φ_i is the mean of i's marginal contribution
      v(S ∪ {i}) − v(S), S the players before i. Unbiased; Σφ = v(N) − v(∅) for every M.
      M·(P − 1) + 2 value calls per image.
    - ``"original"``: the paper's sampler (:func:`sample_contexts`), ``num_samples`` = M contexts
      per player; biased (the context sizes are uniform on 0 … P − 2). 2·P·M value calls per image.
    - ``"exact"``: every coalition, 2^P value calls per image, for P ≤ :data:`MAX_EXACT_PLAYERS`.

    The same ``seed`` gives the same samples for every image, so results do not depend on batching.
    """

    name = "full-shapley"
    depends_on_curve = False

    def __init__(self, num_samples: int = 200, seed: int = 0, sampler: str = "permutation"):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise MoXIError(f"num_samples must be an integer of at least 1, got {num_samples!r}")
        if sampler not in SHAPLEY_SAMPLERS:
            raise MoXIError(f"unknown sampler {sampler!r}; choose one of {', '.join(SHAPLEY_SAMPLERS)}")
        self.num_samples = num_samples
        self.seed = seed
        self.sampler = sampler

    def cost(self, n_players: int, curve: str) -> Cost:
        """The coalitions one image costs, by size: permutation: ∅, N and every order's P − 1 proper prefixes;
        original: each sampled context m (size from the seed, as :func:`sample_contexts` draws it) and
        m ∪ {i}; exact: every coalition."""
        check_curve(curve)
        if self.sampler == "exact":
            return Cost({size: math.comb(n_players, size) for size in range(n_players + 1)})
        if self.sampler == "permutation":
            return Cost({0: 1, n_players: 1}) + Cost({size: self.num_samples for size in range(1, n_players)})
        sizes = _context_sizes(n_players, self.num_samples, torch.Generator().manual_seed(self.seed)).flatten()
        counts = torch.bincount(sizes, minlength=n_players + 1) + torch.bincount(sizes + 1, minlength=n_players + 1)
        return Cost({size: int(count) for size, count in enumerate(counts.tolist()) if count})

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
        if self.sampler == "exact":
            scores = self._exact(game)
        elif self.sampler == "original":
            scores = self._original(game)
        else:
            scores = self._permutation(game)
        return Attribution(order_by_score(scores), scores, settings={"sampler": self.sampler})

    def _permutation(self, game: ValueFunction) -> torch.Tensor:
        n_players, samples = game.n_players, self.num_samples
        orders = sample_permutations(n_players, samples, self.seed)
        ends = torch.tensor([[False] * n_players, [True] * n_players])  # ∅ and N, shared by every order
        coalitions = torch.cat((ends, permutation_coalitions(orders).reshape(-1, n_players)))
        values = _values_for_every_image(game, coalitions)  # (B, 2 + (P − 1)·M)
        empty, full = values[:, :1], values[:, 1:2]
        inner = values[:, 2:].view(game.n_images, n_players - 1, samples).transpose(1, 2)  # (B, M, P − 1)
        chain = torch.cat((empty.unsqueeze(1).expand(-1, samples, 1), inner,
                           full.unsqueeze(1).expand(-1, samples, 1)), dim=2)  # v of prefixes of size 0..P
        gains = chain[:, :, 1:] - chain[:, :, :-1]  # (B, M, P): the gain of the k-th player of each order
        totals = torch.zeros(game.n_images, n_players, dtype=torch.float64)
        totals.scatter_add_(1, orders.reshape(1, -1).expand(game.n_images, -1), gains.reshape(game.n_images, -1))
        return (totals / samples).float()

    def _exact(self, game: ValueFunction) -> torch.Tensor:
        n_players = game.n_players
        if n_players > MAX_EXACT_PLAYERS:
            raise MoXIError(f"sampler 'exact' evaluates all 2^{n_players} coalitions of {n_players} players; it is "
                            f"limited to {MAX_EXACT_PLAYERS} players: use a coarser players grid or sampler 'permutation'")
        return shapley_from_table(_values_for_every_image(game, all_coalitions(n_players))).float()

    def _original(self, game: ValueFunction) -> torch.Tensor:
        n_images, n_players, samples = game.n_images, game.n_players, self.num_samples
        without = sample_contexts(n_players, samples, self.seed)
        with_i = without.clone()
        with_i[torch.arange(n_players), :, torch.arange(n_players)] = True
        pairs = torch.stack((with_i, without), dim=2).reshape(-1, n_players)  # (P·M·2, P)
        scores = torch.empty(n_images, n_players)
        for image in range(n_images):
            owner = torch.full((pairs.shape[0],), image, dtype=torch.long)
            values = game(pairs, owner).view(n_players, samples, 2)
            scores[image] = (values[..., 0] - values[..., 1]).mean(dim=1)
        return scores
