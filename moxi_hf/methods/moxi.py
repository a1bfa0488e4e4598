"""MoXI: greedy insertion/deletion with pairwise interactions folded into one value call per candidate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..cost import Cost
from ..errors import MoXIError
from ..options import check_curve, resolve_budget
from ..value import ValueFunction
from .base import Attribution, Method, register_method

__all__ = ["MoXI", "MoXIAttribution"]


@dataclass
class MoXIAttribution(Attribution):
    """MoXI's result plus values the greedy measured on its way (no extra forward pass).

    ``base_values`` (B,): v(∅) (insertion) or v(N) (deletion). ``first_values`` (B, P): the first
    step's v({i}) (insertion) or v(N ∖ {i}) (deletion) of every player (the first step evaluates
    every player, with or without a budget). ``step_values`` (B, K + 1): v after k = 0..K players
    of ``order`` were taken (NaN past an image's length).
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
        budget: ``"exact"`` (default): the greedy above. ``"fast"``: the budgeted greedy. It
            evaluates every remaining player until the prediction reaches the label (insertion)
            or leaves it (deletion), at each of the first ``warmup`` steps and every ``refresh``
            steps; at the other steps only the ``candidates`` players whose gain was the best
            when last measured. Up to the label's change it is the exact greedy, so the patches
            needed and the heatmap are exact's (docs/performance.md: its measured cost and fidelity).
        candidates: players evaluated at a budgeted step (default: the ``"fast"`` preset).
        refresh: steps between evaluations of every remaining player (default: the preset).
        warmup: first steps that evaluate every remaining player (default: the preset).
        progress: show a progress bar over greedy steps.

    ``scores`` are the value gained (insertion) or lost (deletion) when each player was taken;
    players never taken score 0.
    """

    name = "moxi"

    def __init__(self, max_players: int | None = None, early_stop: bool = False, budget: str = "exact",
                 candidates: int | None = None, refresh: int | None = None, warmup: int | None = None,
                 progress: bool = False):
        if max_players is not None and max_players < 1:
            raise MoXIError(f"max_players must be at least 1, got {max_players}")
        self.candidates, self.refresh, self.warmup = resolve_budget(budget, candidates, refresh, warmup)
        if early_stop and self.candidates is not None:
            raise MoXIError(f"budget {budget!r} cannot be combined with early_stop (--early-stop): an early-stopped "
                            "order gives the exact patches needed, which the budget may change; use one or the other")
        self.max_players = max_players
        self.early_stop = early_stop
        self.budget = budget
        self.progress = progress

    def cost(self, n_players: int, curve: str, label_step: int | None = None) -> Cost:
        """v(∅) (or v(N)), then the coalitions of each greedy step (:meth:`step_coalitions`), of size s + 1
        (insertion) or P − s − 1 (deletion) at step s.

        Exact greedy: P − s coalitions at step s. With ``early_stop`` an image may stop sooner (the cost is an
        upper bound). With a budget the count depends on the step at which the label changes, known only
        once the image is explained; ``label_step`` None estimates it within the warmup, as a confident
        model does (insertion reaches the label after a patch or two): a lower bound when it changes later.
        Either way ``exact`` is False.
        """
        insertion = check_curve(curve) == "insertion"
        budgeted = self.candidates is not None
        counts = self.step_coalitions(n_players, 0 if budgeted and label_step is None else label_step)
        sizes = {0 if insertion else n_players: 1}
        for step, count in enumerate(counts):
            sizes[step + 1 if insertion else n_players - step - 1] = count
        return Cost(sizes, exact=not (self.early_stop or budgeted))

    def step_coalitions(self, n_players: int, label_step: int | None = None) -> list[int]:
        """Coalitions evaluated at each greedy step of one image (before v(∅)/v(N), which is one more).

        Step t's coalitions hold t + 1 players (insertion) or P − t − 1 (deletion). With a budget
        the count depends on ``label_step``, the step at which the label is reached (insertion) or
        lost (deletion): None assumes it never happens (the most work), 0 that it happens at the
        first step (the least).
        """
        steps = min(n_players, self.max_players or n_players)
        label_step = n_players if label_step is None else label_step
        counts = []
        for step in range(steps):
            width = n_players - step
            full = step <= label_step or self._full_step(step, width)
            counts.append(width if full else min(self.candidates, width))
        return counts

    def _full_step(self, step: int, width: int) -> bool:
        """Whether a step evaluates every remaining player of every image (the budget's schedule)."""
        return self.candidates is None or step < self.warmup or step % self.refresh == 0 or width <= self.candidates

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
        changed = torch.zeros(n_images, dtype=torch.bool)  # the label was reached (insertion) / lost (deletion)
        # Budgeted greedy: each player's gain when last measured (-inf once taken).
        gains = torch.full((n_images, n_players), float("-inf")) if self.candidates is not None else None
        for step in tqdm(range(steps), desc="moxi", unit="step", disable=not self.progress, leave=False):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            remaining = present[rows] != insertion
            full = ~changed[rows] | self._full_step(step, n_players - step)  # per image
            tried = remaining if bool(full.all()) else torch.where(
                full.unsqueeze(1), remaining, self._top_gains(gains[rows], self.candidates))
            # Values of this step's evaluated players (NaN elsewhere), player-indexed per row.
            fresh = _StepValues(rows.numel(), n_players)
            fresh.measure(game, present, rows, tried, insertion)
            if step == 0:
                first_values = fresh.values.clone()  # every player is a candidate at the first step
            if gains is not None:  # the gains just measured replace the older ones
                measured = fresh.values - current[rows].unsqueeze(1) if insertion else \
                    current[rows].unsqueeze(1) - fresh.values
                gains[rows] = torch.where(tried, measured, gains[rows])
            chosen, value, probability, prediction = fresh.best(insertion)
            present[rows, chosen] = insertion
            order[rows, step] = chosen
            scores[rows, chosen] = (value - current[rows]) if insertion else (current[rows] - value)
            current[rows] = value
            if gains is not None:
                gains[rows, chosen] = float("-inf")
            step_values[rows, step + 1] = value
            probabilities[rows, step + 1] = probability
            predictions[rows, step + 1] = prediction
            taken[rows] = step + 1
            reached = prediction == game.labels[rows]
            done = reached if insertion else ~reached  # the label reached (insertion) / lost (deletion)
            changed[rows] |= done
            if self.early_stop:
                active[rows[done]] = False
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

    @staticmethod
    def _top_gains(gains: torch.Tensor, count: int) -> torch.Tensor:
        """(R, P) bool: the ``count`` players of each row with the largest gain (ties → lowest index),
        among those not taken (gain -inf)."""
        ranked = torch.sort(gains, dim=1, descending=True, stable=True).indices[:, :count]
        tried = torch.zeros_like(gains, dtype=torch.bool)
        tried.scatter_(1, ranked, True)
        return tried & (gains > float("-inf"))


class _StepValues:
    """v, p(label) and the predicted class of the players evaluated at one greedy step, (R, P) per row."""

    def __init__(self, n_rows: int, n_players: int):
        self.values = torch.full((n_rows, n_players), float("nan"))
        self.probabilities = torch.full((n_rows, n_players), float("nan"))
        self.predictions = torch.full((n_rows, n_players), -1, dtype=torch.long)

    def measure(self, game, present, rows, tried, insertion) -> None:
        """Evaluate, for each row, the coalition with each ``tried`` player (R, P) bool taken."""
        candidates = tried.nonzero()  # row-major: players ascending within each row
        if candidates.numel() == 0:
            return
        local, player = candidates[:, 0], candidates[:, 1]
        owner = rows[local]
        coalitions = present[owner]
        coalitions[torch.arange(owner.numel()), player] = insertion
        out = game.evaluate(coalitions, owner)
        self.values[local, player] = out.values
        self.probabilities[local, player] = out.probabilities
        self.predictions[local, player] = out.predictions

    def best(self, insertion: bool):
        """Per row: the chosen player (largest v for insertion, smallest for deletion; ties → lowest
        index) and its v, p(label) and predicted class."""
        score = self.values if insertion else -self.values
        pick = score.nan_to_num(float("-inf"), posinf=float("inf"), neginf=float("-inf")).argmax(dim=1)
        index = torch.arange(pick.numel())
        return pick, self.values[index, pick], self.probabilities[index, pick], self.predictions[index, pick]
