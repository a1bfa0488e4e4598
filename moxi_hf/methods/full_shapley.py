"""Full-context Shapley values by Monte Carlo sampling (the paper's baseline)."""

from __future__ import annotations

import torch

from ..cost import Cost
from ..errors import MoXIError
from ..options import check_curve
from ..value import ValueFunction
from .base import Attribution, Method, order_by_score, register_method

__all__ = ["FullContextShapley", "sample_contexts"]


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


@register_method
class FullContextShapley(Method):
    """φ_i = mean over M samples of v(m ∪ {i}) − v(m), m a random context (see :func:`sample_contexts`).

    2·P·M value calls per image. The same ``seed`` gives the same contexts for every image, so
    results do not depend on batching. Order: descending φ, ties to the lowest index; the
    order is the same for insertion and deletion.
    """

    name = "full-shapley"
    depends_on_curve = False

    def __init__(self, num_samples: int = 200, seed: int = 0):
        if num_samples < 1:
            raise MoXIError(f"num_samples must be at least 1, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed

    def cost(self, n_players: int, curve: str) -> Cost:
        """Each sampled context m (size from the seed, as :func:`sample_contexts` draws it) and m ∪ {i}."""
        check_curve(curve)
        sizes = _context_sizes(n_players, self.num_samples, torch.Generator().manual_seed(self.seed)).flatten()
        counts = torch.bincount(sizes, minlength=n_players + 1) + torch.bincount(sizes + 1, minlength=n_players + 1)
        return Cost({size: int(count) for size, count in enumerate(counts.tolist()) if count})

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        check_curve(curve)
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
        return Attribution(order_by_score(scores), scores)
