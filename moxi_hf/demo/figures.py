"""The pictures the demo shows, each from one library call, rendered to PIL images.

These are the only places the page touches the library's plotting, so they can follow it when it
moves. Figures are built on :class:`matplotlib.figure.Figure` (no pyplot state shared between
requests), except the compare sheet, whose plotter writes a file through pyplot (serialised here).
"""

from __future__ import annotations


import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation

__all__ = ["compare_figure", "curve_figure", "heatmap_figure", "interactions_figure", "to_image"]



def to_image(figure: Figure, dpi: int = 120) -> Image.Image:
    """An RGB PIL image of a matplotlib figure."""
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def heatmap_figure(explanation: Explanation, image: Image.Image) -> Image.Image:
    """The heatmap over the image (players in the order's first k hottest)."""
    figure = Figure(figsize=(4, 4.3))
    ax = figure.add_subplot()
    explanation.plot(image=image, ax=ax)
    figure.tight_layout()
    return to_image(figure)


def curve_figure(explanation: Explanation) -> Image.Image:
    """p(label) after k players of the order were inserted (insertion) or deleted (deletion)."""
    figure = Figure(figsize=(4.6, 3.2))
    ax = figure.add_subplot()
    probabilities = explanation.curve_probabilities or []
    ax.plot(range(len(probabilities)), probabilities, color="tab:blue", linewidth=1.6)
    ax.axvline(explanation.patches_needed, color="tab:red", linestyle="--", linewidth=1,
               label=f"patches needed: {explanation.patches_needed}")
    verb = "inserted" if explanation.curve == "insertion" else "deleted"
    ax.set_xlabel(f"players {verb} (of {explanation.n_players}), {explanation.method} order")
    ax.set_ylabel("p(label)")
    ax.set_xlim(0, explanation.n_players)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if explanation.curve == "insertion" else "upper right")
    ax.set_title(f"{explanation.curve} curve", fontsize=10)
    figure.tight_layout()
    return to_image(figure)


def interactions_figure(explanation: Explanation, image: Image.Image) -> Image.Image | None:
    """MoXI's interaction picture, or None where the library does not draw one for this explanation."""
    plot = getattr(explanation, "plot_interactions", None)
    if plot is None:
        return None
    try:
        figure = plot(image=image)
    except MoXIError:  # explained without interactions
        return None
    return to_image(figure) if isinstance(figure, Figure) else None


def compare_figure(explainer: Explainer, image: Image.Image, methods: list[str], curve: str,
                   label: int | None) -> tuple[Image.Image, dict]:
    """The compare sheet of ``methods`` on one image and its JSON-able record."""
    from ..cli.compare import compare_batch, comparison_to_dict
    from ..plotting import plot_comparison

    result = compare_batch(explainer, [image], None if label is None else [int(label)], methods, curve, {},
                           progress=True, explicit=True)[0]
    picture = to_image(plot_comparison(result))
    return picture, comparison_to_dict(result)
