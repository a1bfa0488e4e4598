"""MoXI: greedy insertion/deletion with pairwise interactions folded into one value call per candidate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..cost import Cost
from ..errors import MoXIError
from ..options import check_curve
from ..value import ValueFunction
from .base import Attribution, Method, register_method

__all__ = ["MoXI", "MoXIAttribution"]


@dataclass
class MoXIAttribution(Attribution):
    """MoXI's result plus values the greedy measured on its way (no extra forward pass).

    ``base_values`` (B,): v(∅) (insertion) or v(N) (deletion). ``first_values`` (B, P): the first
    step's v({i}) (insertion) or v(N ∖ {i}) (deletion) of every player. ``step_values`` (B, K + 1):
    v after k = 0..K players of ``order`` were taken (NaN past an image's length).
    """

    base_values: torch.Tensor | None = None
    first_values: torch.Tensor | None = None
    step_values: torch.Tensor | None = None


@register_method
class MoXI(Method):
    """Greedy MoXI (docs/algorithm.md, "MoXI").

    Insertion: from S = ∅, repeatedly add the player i ∉ S maximising v(S ∪ {i}).
    Deletion: from R = all, repeatedly remove the player i ∈ R minimising v(R ∖ {i}).
    Only the remaining candidates are evaluated at each step; all images of the value function
    advance together, so a step's coalitions (all of one size) share forward passes.
    Ties go to the lowest player index.

    Args:
        max_players: stop after this many players (default: order all of them).
        early_stop: stop an image once the prediction equals the label (insertion) or no longer
            does (deletion); its order then holds only the players needed.
        progress: show a progress bar over greedy steps.

    ``scores`` are the value gained (insertion) or lost (deletion) when each player was taken;
    players never taken score 0.
    """

    name = "moxi"

    def __init__(self, max_players: int | None = None, early_stop: bool = False, progress: bool = False):
        if max_players is not None and max_players < 1:
            raise MoXIError(f"max_players must be at least 1, got {max_players}")
        self.max_players = max_players
        self.early_stop = early_stop
        self.progress = progress

    def cost(self, n_players: int, curve: str) -> Cost:
        """v(∅) (or v(N)), then P − s candidates of size s + 1 (insertion) or P − s − 1 (deletion) at step s.

        With ``early_stop`` an image may stop sooner: the cost is then an upper bound.
        """
        insertion = check_curve(curve) == "insertion"
        steps = min(n_players, self.max_players or n_players)
        sizes = {0 if insertion else n_players: 1}
        for step in range(steps):
            sizes[step + 1 if insertion else n_players - step - 1] = n_players - step
        return Cost(sizes, exact=not self.early_stop)

    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        insertion = check_curve(curve) == "insertion"
        n_images, n_players = game.n_images, game.n_players
        steps = min(n_players, self.max_players or n_players)
        images = torch.arange(n_images)
        present = torch.full((n_images, n_players), not insertion, dtype=torch.bool)
        start = game.evaluate(present, images)
        current = start.values.clone()
        order = torch.full((n_images, steps), -1, dtype=torch.long)
        scores = torch.zeros(n_images, n_players)
        probabilities = torch.full((n_images, steps + 1), float("nan"))
        predictions = torch.full((n_images, steps + 1), -1, dtype=torch.long)
        step_values = torch.full((n_images, steps + 1), float("nan"))
        step_values[:, 0] = start.values
        first_values = None
        probabilities[:, 0], predictions[:, 0] = start.probabilities, start.predictions
        taken = torch.zeros(n_images, dtype=torch.long)
        active = torch.ones(n_images, dtype=torch.bool)
        for step in tqdm(range(steps), desc="moxi", unit="step", disable=not self.progress, leave=False):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            # Candidates: players not yet taken, ascending within each image (lowest index wins ties).
            candidates = (present[rows] != insertion).nonzero()
            owner, player = rows[candidates[:, 0]], candidates[:, 1]
            coalitions = present[owner]
            coalitions[torch.arange(owner.numel()), player] = insertion
            out = game.evaluate(coalitions, owner)
            width = n_players - step
            values = out.values.view(rows.numel(), width)
            if step == 0:
                first_values = values.clone()  # every player is a candidate at the first step
            pick = values.argmax(dim=1) if insertion else values.argmin(dim=1)
            flat = torch.arange(rows.numel()) * width + pick
            chosen, value = player[flat], out.values[flat]
            present[rows, chosen] = insertion
            order[rows, step] = chosen
            scores[rows, chosen] = (value - current[rows]) if insertion else (current[rows] - value)
            current[rows] = value
            step_values[rows, step + 1] = value
            probabilities[rows, step + 1] = out.probabilities[flat]
            predictions[rows, step + 1] = out.predictions[flat]
            taken[rows] = step + 1
            if self.early_stop:
                reached = out.predictions[flat] == game.labels[rows]
                active[rows[reached if insertion else ~reached]] = False
        if self.early_stop or steps < n_players:
            # Images may stop at different steps: keep the longest prefix, with per-image lengths.
            length = int(taken.max())
            order = order[:, :length]
            probabilities, predictions = probabilities[:, : length + 1], predictions[:, : length + 1]
            step_values = step_values[:, : length + 1]
            return MoXIAttribution(order, scores, probabilities, predictions, lengths=taken,
                                   base_values=start.values, first_values=first_values, step_values=step_values)
        return MoXIAttribution(order, scores, probabilities, predictions, base_values=start.values,
                               first_values=first_values, step_values=step_values)
