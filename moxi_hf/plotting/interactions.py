"""Pictures of interactions: the pair map over the image and the gain split along the order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..errors import MoXIError

__all__ = ["interactions_figure", "plot_gain_split", "plot_interaction_map"]

POSITIVE, NEGATIVE = "#d62728", "#1f5fbf"  # synergy (worth more together) / redundancy
SELF_COLOUR, OUTLINE = "#8c8c8c", "#ffb000"


def _cell(player: int, grid: tuple[int, int], height: float, width: float) -> tuple[float, float, float, float]:
    """(x0, y0, w, h) of a player's cell in image pixels (row-major grid)."""
    rows, cols = grid
    h, w = height / rows, width / cols
    return (player % cols) * w, (player // cols) * h, w, h


def strongest_pairs(matrix: np.ndarray, count: int) -> list[tuple[int, int, float]]:
    """The ``count`` pairs (a, b, I) with a < b of largest |I| (ties: lowest ranks first); zeros left out."""
    first, second = np.triu_indices(matrix.shape[0], k=1)
    values = matrix[first, second]
    keep = np.argsort(-np.abs(values), kind="stable")[:count]
    return [(int(first[i]), int(second[i]), float(values[i])) for i in keep if values[i] != 0]


def plot_interaction_map(
    ax: Axes,
    image: np.ndarray | None,
    grid: tuple[int, int],
    players: Sequence[int],
    matrix: np.ndarray | Sequence[Sequence[float]],
    top_pairs: int = 8,
) -> None:
    """The first K players outlined and numbered by rank, the strongest pairs joined.

    ``image`` (H, W, 3) uint8 or None; ``players`` (K,) ids in the ``grid`` (rows, cols);
    ``matrix`` (K, K) I(i, j). A line's colour is the sign of I, its width |I| relative to the
    strongest pair; its value is written at its middle.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    height, width = (image.shape[:2] if image is not None else (grid[0] * 20, grid[1] * 20))
    if image is not None:
        faded = 0.55 * np.asarray(image, dtype=np.float64) / 255.0 + 0.45  # pale, so the lines stand out
        ax.imshow(faded, interpolation="nearest", extent=(0, width, height, 0))
    else:
        ax.imshow(np.ones((height, width, 3)), extent=(0, width, height, 0))
    centres = []
    for player in players:
        x, y, w, h = _cell(int(player), grid, height, width)
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=OUTLINE, linewidth=1.6, zorder=3))
        centres.append((x + w / 2, y + h / 2))
    pairs = strongest_pairs(matrix, top_pairs)
    strongest = max((abs(value) for _, _, value in pairs), default=1.0) or 1.0
    for a, b, value in pairs:
        start, end = centres[a], centres[b]
        # Arcs, not straight lines: pairs along one row or column would otherwise overlap.
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-", connectionstyle="arc3,rad=0.25",
                                     color=POSITIVE if value > 0 else NEGATIVE,
                                     linewidth=1.0 + 5.0 * abs(value) / strongest, alpha=0.85, zorder=4))
    for rank, (x, y) in enumerate(centres, start=1):
        ax.text(x, y, str(rank), ha="center", va="center", fontsize=8, fontweight="bold", zorder=5,
                bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": OUTLINE, "linewidth": 1.0})
    lines = [f"#{a + 1}–#{b + 1}: {value:+.2f}" for a, b, value in pairs[:4]]
    if lines:
        ax.text(0.01, -0.02, "strongest pairs  " + "   ".join(lines), transform=ax.transAxes, ha="left", va="top",
                fontsize=7)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    ax.legend(handles=[Line2D([], [], color=POSITIVE, linewidth=3, label="I > 0: more together"),
                       Line2D([], [], color=NEGATIVE, linewidth=3, label="I < 0: redundant")],
              loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, fontsize=7, frameon=False)


def plot_gain_split(
    ax: Axes,
    gains: dict[str, Sequence[float]],
    curve_probabilities: Sequence[float] | None = None,
    patches_needed: int | None = None,
    count: int | None = None,
    curve: str = "insertion",
    unit: str = "value",
) -> Axes | None:
    """Stacked bars of self and interaction for the first ``count`` players of the order, p(label) on a twin axis.

    Positive parts stack upwards from 0 and negative parts downwards (the usual stacking for mixed
    signs), so both stay visible; a tick marks each step's gain (self + interaction).
    ``curve_probabilities`` are p(label) at k = 0..len(order); ``unit`` names the reward on the
    y axis (e.g. ``"log-odds"``). Returns the twin axis.
    """
    alone = np.asarray(gains["self"], dtype=np.float64)
    together = np.asarray(gains["interaction"], dtype=np.float64)
    count = min(len(alone), count or len(alone))
    alone, together = alone[:count], together[:count]
    steps = np.arange(1, count + 1)
    ax.bar(steps, alone, width=0.75, color=SELF_COLOUR)
    # The interaction bar starts where the self bar ends when both have the same sign, else at 0.
    bottom = np.where(np.sign(together) == np.sign(alone), alone, 0.0)
    ax.bar(steps, together, bottom=bottom, width=0.75, color=np.where(together >= 0, POSITIVE, NEGATIVE))
    ax.scatter(steps, alone + together, marker="_", s=140, color="black", linewidths=1.8, zorder=3)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(0.4 if curve_probabilities is None else -0.4, count + 0.6)
    ax.set_xlabel("k-th player of the order")
    loss = curve == "deletion"
    ax.set_ylabel(f"{unit} {'lost' if loss else 'gained'} at step k")
    ax.set_xticks(steps if count <= 25 else steps[steps % 5 == 0])
    twin = None
    if curve_probabilities is not None:
        twin = ax.twinx()
        probabilities = np.asarray(curve_probabilities, dtype=np.float64)[: count + 1]
        twin.plot(np.arange(len(probabilities)), probabilities, color="black", marker="o", markersize=3,
                  linewidth=1.2)
        twin.set_ylim(-0.02, 1.02)
        twin.set_ylabel(f"p(label) after k players {'deleted' if loss else 'inserted'}")
    if patches_needed is not None and patches_needed <= count:
        ax.axvline(patches_needed + 0.5, color="black", linestyle=":", linewidth=1)
        ax.text(patches_needed + 0.55, 0.02, "patches needed", transform=ax.get_xaxis_transform(), ha="left",
                va="bottom", fontsize=7, rotation=90)
    handles = [Patch(color=SELF_COLOUR, label="self"), Patch(color=POSITIVE, label="interaction > 0"),
               Patch(color=NEGATIVE, label="interaction < 0"),
               Line2D([], [], color="black", marker="_", linestyle="none", markersize=10, label="gain")]
    if twin is not None:
        handles.append(Line2D([], [], color="black", marker="o", markersize=3, label="p(label)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(handles), fontsize=7,
              frameon=False)
    return twin


def interactions_figure(explanation, image: np.ndarray | None = None, top_pairs: int = 8,
                        count: int | None = None) -> Figure:
    """Pair map (left) and, when the explanation has ``gains`` (MoXI), the gain split (right).

    ``explanation`` is a :class:`~moxi_hf.explanation.Explanation` explained with ``interactions=True``;
    ``image`` (H, W, 3) uint8. ``count``: bars shown (default: the players needed, at least K, at most 30).
    """
    found = getattr(explanation, "interactions", None)
    if not found:
        raise MoXIError("this explanation has no interactions; explain with interactions=True")
    gains = explanation.gains
    figure = Figure(figsize=(10.5, 4.6) if gains else (4.6, 4.8))
    axes = figure.subplots(1, 2, width_ratios=(1, 1.45)) if gains else [figure.subplots()]
    players, matrix = found["players"], found["matrix"]
    plot_interaction_map(axes[0], image, tuple(explanation.grid), players, matrix, top_pairs)
    label = explanation.label_text
    axes[0].set_title(f"{explanation.method} ({explanation.curve}), label {label}\n"
                      f"interactions among the first {len(players)} players", fontsize=9)
    if gains:
        shown = count or min(max(explanation.patches_needed, len(players)), 30)
        plot_gain_split(axes[1], gains, explanation.curve_probabilities, explanation.patches_needed, shown,
                        explanation.curve, explanation.reward or "value")
        axes[1].set_title("gain of each step: self + interaction", fontsize=9)
    figure.tight_layout()
    return figure
