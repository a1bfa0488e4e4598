"""What a run costs before it starts: coalitions by size, and the token-forwards they take on a model.

A :class:`Cost` counts the coalitions one image needs, by coalition size (players present). The
methods say theirs (:meth:`moxi_hf.Method.cost`); :meth:`moxi_hf.Explainer.cost` adds the curves
and interaction maps a run measures. :meth:`Cost.token_forwards` turns it into the work the
value function reports to its ``on_chunk`` callback, so a progress bar can know its total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Cost", "curve_cost"]


@dataclass(frozen=True)
class Cost:
    """Coalitions one image costs: ``sizes`` maps a coalition size (players present) to how many.

    ``exact`` False: an estimate (an upper bound for a method that may stop early, a lower bound for
    MoXI's budget, whose work grows when the label changes late). Costs add (``a + b``) and scale
    with the number of images (``cost * 8``).
    """

    sizes: Mapping[int, int] = field(default_factory=dict)
    exact: bool = True

    @property
    def coalitions(self) -> int:
        return sum(self.sizes.values())

    def __add__(self, other: Cost) -> Cost:
        return Cost(dict(Counter(self.sizes) + Counter(other.sizes)), self.exact and other.exact)

    def __mul__(self, images: int) -> Cost:
        return Cost({size: count * images for size, count in self.sizes.items() if count * images}, self.exact)

    __rmul__ = __mul__

    def token_forwards(self, adapter, players) -> int:
        """The work of these coalitions on ``adapter`` (a removal adapter) with ``players``: the sum of
        ``adapter.cost(kept patches)`` over the coalitions (tokens for token removal, one per coalition for
        pixel masking), as the value function counts it."""
        total = 0
        for size, count in self.sizes.items():
            kept = size * players.patches_per_player if adapter.needs_equal_counts else players.n_patches
            total += count * adapter.cost(kept)
        return total


def curve_cost(n_players: int) -> Cost:
    """One insertion or deletion curve, k = 0..P: one coalition of every size."""
    return Cost({size: 1 for size in range(n_players + 1)})
