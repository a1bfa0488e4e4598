"""Progress counted in token-forwards, and a run's time estimated before it starts.

The work of a run is the token-forwards its coalitions send through the model (kept patches plus
special tokens each; one per coalition for pixel masking): :meth:`moxi_hf.Explainer.cost` counts
them in advance, the value function reports them chunk by chunk (its ``on_chunk`` callback). A bar
over that count has a right ETA from its first update, where a bar over images or greedy steps
does not (a greedy step's coalitions grow or shrink as it goes).
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .cost import Cost

__all__ = ["SLOW_RUN_SECONDS", "WorkBar", "estimate_seconds", "faster_choices", "format_duration", "slow_run_line",
           "slow_run_note", "token_rate"]

#: a run estimated above this many seconds says so, with faster choices, before it starts
SLOW_RUN_SECONDS = 120.0


class WorkBar:
    """A progress bar over token-forwards; use it as the ``on_chunk`` callback (chained to ``then``).

    ``total``: the run's token-forwards (None when unknown). A chunk counts once it is done (at the
    next chunk, or :meth:`close`), so the bar's rate and ETA are those of finished work; the ETA is the
    average rate since the start (``smoothing=0``), right from the first update when the total is. A
    total that turns out low (an estimate) grows with the work.
    """

    def __init__(self, total: int | None, desc: str, disable: bool = False, then=None):
        self.bar = tqdm(total=total, desc=desc, unit="tok", unit_scale=True, smoothing=0, disable=disable,
                        dynamic_ncols=True)
        self.then = then
        self.total = total
        self.done = 0  # token-forwards of finished chunks
        self.pending = 0  # token-forwards of the chunk under way

    def __call__(self, coalitions: int, token_forwards: int) -> None:
        if self.then is not None:
            self.then(coalitions, token_forwards)
        self._count()
        self.pending = token_forwards

    def _count(self) -> None:
        if self.pending:
            self.done += self.pending
            if self.total is not None and self.done > self.total:
                self.total = self.bar.total = self.done
            self.bar.update(self.pending)
            self.pending = 0

    def note(self, text: str) -> None:
        """Text after the bar (e.g. images done)."""
        self._count()
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self._count()
        self.bar.close()

    def __enter__(self) -> WorkBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def token_rate(explainer, cost: Cost, min_seconds: float = 0.5, max_batch_tokens: int | None = None) -> float:
    """Token-forwards per second of ``explainer``'s value function, timed as a run spends them.

    A run's forward passes hold coalitions of one size each (a greedy step's, a curve point's), up to a
    chunk: each timed batch is one size, drawn with the weight of its token-forwards in ``cost``, of
    as many coalitions as fill a chunk (or ``max_batch_tokens``). One untimed batch first, then
    batches for at least ``min_seconds``. The content of an image does not change the rate: a blank
    one is used.
    """
    from PIL import Image

    pixel_values, _ = explainer.preprocess([Image.new("RGB", (64, 64))])
    game = explainer.value_function(pixel_values, [0])
    n_players, players = game.n_players, explainer.players
    sizes = sorted(cost.sizes.items()) or [(n_players, 1)]
    per_coalition = [Cost({size: 1}).token_forwards(explainer.adapter, players) for size, _ in sizes]
    weights = torch.tensor([count * tokens for (_, count), tokens in zip(sizes, per_coalition)], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)

    def batch() -> torch.Tensor:
        pick = int(torch.multinomial(weights, 1, generator=generator))
        fill = min(game.chunk_cost, max_batch_tokens or game.chunk_cost)
        number = max(1, min(game.max_batch_size, fill // per_coalition[pick]))
        present = torch.zeros(number, n_players, dtype=torch.bool)
        for row in range(number):
            present[row, torch.randperm(n_players, generator=generator)[: sizes[pick][0]]] = True
        return present

    game.evaluate(batch())  # warm-up: first-call allocations and kernel choice
    tokens, start = game.tokens, time.perf_counter()
    while True:
        game.evaluate(batch())
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return (game.tokens - tokens) / elapsed


def estimate_seconds(explainer, cost: Cost | None, n_images: int) -> tuple[float, int] | None:
    """(seconds, token-forwards) of ``n_images`` images costing ``cost`` each on this machine; None when the
    cost is unknown or nothing."""
    if cost is None or not cost.sizes or n_images < 1:
        return None
    tokens = explainer.token_forwards(cost, n_images)
    # Small batches first: they run slower than a run's full chunks, so a run they put well under the
    # threshold is short; only a long one is timed again, chunk by chunk as it will run.
    seconds = tokens / token_rate(explainer, cost, min_seconds=0.2, max_batch_tokens=1024)
    if seconds > SLOW_RUN_SECONDS / 4:
        seconds = tokens / token_rate(explainer, cost, min_seconds=1.0)
    return seconds, tokens


def format_duration(seconds: float) -> str:
    """``about 40 s`` / ``about 23 min`` / ``about 2.5 h``."""
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def slow_run_note(command: str, seconds: float, tokens: int, images: int, faster: list[str], exact: bool) -> str:
    """The line a run estimated above :data:`SLOW_RUN_SECONDS` prints before it starts."""
    kind = "" if exact else " (an estimate: the budget's or early stop's work depends on the image)"
    line = (f"{command}: this run is estimated at {format_duration(seconds)} on this machine: {tokens:,} "
            f"token-forwards for {images} image(s){kind}")
    return line + (f"; faster: {', '.join(faster)}" if faster else "")


def faster_choices(explainer, moxi: dict | None, early_stop: bool = False) -> list[str]:
    """The flags that would make a run cheaper, given its explainer and MoXI's options (None: MoXI not run);
    ``early_stop``: the command offers ``--early-stop``."""
    choices = []
    if moxi is not None and moxi.get("budget", "exact") == "exact" and not moxi.get("early_stop"):
        choices.append("--budget fast (full orders, 3-7x less work)")
        if early_stop:
            choices.append("--early-stop (exact, stops at the patches needed)")
    n_players = explainer.players.n_players
    if n_players > 49:
        choices.append(f"--players-grid 7 (49 players instead of {n_players}: about {(n_players / 49) ** 2:.0f}x "
                       "less work, a coarser heatmap)")
    if explainer.adapter.dtype == torch.float32:
        choices.append("--dtype bfloat16")
    if explainer.adapter.device.type == "cpu":
        choices.append("a GPU (--device cuda)")
    return choices


def slow_run_line(command: str, explainer, cost: Cost | None, n_images: int, moxi: dict | None,
                  early_stop: bool = False, processes: int = 1) -> str | None:
    """The line to print before a run of ``n_images`` images costing ``cost`` each, shared by ``processes``
    processes, when it is estimated above :data:`SLOW_RUN_SECONDS` (:func:`slow_run_note`, with
    :func:`faster_choices` for ``moxi``/``early_stop``); None for a shorter run or an unknown cost."""
    estimate = estimate_seconds(explainer, cost, n_images)
    if estimate is None or estimate[0] / processes <= SLOW_RUN_SECONDS:
        return None
    return slow_run_note(command, estimate[0] / processes, estimate[1], n_images,
                         faster_choices(explainer, moxi, early_stop), cost.exact)
