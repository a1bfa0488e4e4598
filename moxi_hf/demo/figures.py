"""The pictures the demo shows, each drawn by the library's plotting package and rendered in memory.

Every figure is a ``matplotlib.figure.Figure`` from :mod:`moxi_hf.plotting` (no pyplot, no files):
heatmaps and the interaction picture are over the model's view of the image, as the library draws them.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from PIL import Image

from ..artifacts import public_name
from ..explainer import Explainer
from ..explanation import Explanation
from ..plotting import plot_comparison_curves, plot_explanation_curve, png_bytes

__all__ = ["compare_figures", "curve_figure", "heatmap_figure", "interactions_figure", "to_image"]


def to_image(figure: Figure, dpi: int = 120) -> Image.Image:
    """An RGB PIL image of a matplotlib figure: the PNG the library saves (``bbox_inches="tight"``), so a title
    that wraps onto more lines than the figure planned for (a long label name) is shown whole."""
    return Image.open(io.BytesIO(png_bytes(figure, dpi))).convert("RGB")


def heatmap_figure(explanation: Explanation) -> Image.Image:
    """The heatmap over the model's view of the image."""
    return to_image(explanation.plot())


def curve_figure(explanation: Explanation) -> Image.Image:
    """p(label) along the explanation's order (insertion or deletion)."""
    return to_image(plot_explanation_curve(explanation))


def interactions_figure(explanation: Explanation) -> Image.Image | None:
    """The interaction map and gain split (MoXI explained with interactions), or None without interactions."""
    if not explanation.interactions:
        return None
    return to_image(explanation.plot_interactions())


def compare_figures(explainer: Explainer, image: Image.Image, methods: list[str], curve: str,
                    label: int | None, on_chunk=None) -> tuple[list[tuple[Image.Image, str]], Image.Image, dict]:
    """``methods`` compared on one image (``on_chunk``: progress/cancel), drawn for a page.

    Returns each method's heatmap (its ``curve`` order, with the rank legend) and caption (the method and
    the AUC of that curve), one picture of every method's insertion and deletion curves, and the
    comparison's JSON-able record.
    """
    from ..compare import compare_methods, comparison_to_dict

    result = compare_methods(explainer, [image], methods, curve, None if label is None else [int(label)],
                             interactions=False, on_chunk=on_chunk)[0]
    heatmaps = []
    for name, record in result["methods"].items():
        explanation = record["heatmap"]
        explanation.model = public_name(explanation.model)  # as `moxi compare` records it
        heatmaps.append((heatmap_figure(explanation), f"{name} · AUC {record[curve]['auc']:.2f}"))
    return heatmaps, to_image(plot_comparison_curves(result)), comparison_to_dict(result)
