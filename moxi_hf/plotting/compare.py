"""The comparison sheet of one image: a heatmap per method on top, insertion and deletion curves below."""

from __future__ import annotations

from ..labels import label_text
from ..options import CURVES
from ._figure import new_figure
from .heatmap import add_rank_colorbar, draw_heatmap, explanation_picture

__all__ = ["plot_comparison", "plot_comparison_curves"]


def plot_comparison(result: dict, title: str | None = None, image=None):
    """One figure from a comparison ``result`` (``moxi compare``): returns the figure.

    ``result``: ``label``, ``label_name``, ``predicted``, ``predicted_name``, ``grid``, ``curve``,
    ``methods`` (name -> {``heatmap``: Explanation, ``insertion``/``deletion``: {``probabilities``,
    ``auc``}}) and ``display_image`` (the model's view; ``image`` overrides it).
    """
    image = image if image is not None else result.get("display_image")
    methods = list(result["methods"])
    columns = len(methods) + 1
    figure = new_figure(max(1.9 * columns, 8.0), 5.6)
    top, bottom = figure.add_gridspec(2, 1, height_ratios=[1.0, 1.5], hspace=0.25)
    heat_axes = top.subgridspec(1, columns, wspace=0.15).subplots()
    heat_axes = list(heat_axes) if columns > 1 else [heat_axes]
    image_ax = heat_axes[0]
    if image is not None:
        image_ax.imshow(image, interpolation="nearest")
    image_ax.set_axis_off()
    image_ax.set_title(f"input\npredicted {label_text(result['predicted'], result['predicted_name'])}", fontsize=9)
    n_players = result["grid"][0] * result["grid"][1]
    max_rank = max([result["methods"][name]["heatmap"].patches_needed for name in methods], default=1)
    scale = None
    for ax, name in zip(heat_axes[1:], methods):  # one colour scale: a rank has the same colour in each heatmap
        explanation = result["methods"][name]["heatmap"]
        scale = draw_heatmap(ax, explanation.heatmap_array, explanation_picture(explanation, image),
                             f"{name}\n{explanation.patches_needed}/{n_players} needed", max_rank=max_rank)
    if scale is not None:
        add_rank_colorbar(figure, scale, heat_axes, fraction=0.02, pad=0.01)
    plot_comparison_curves(result, bottom.subgridspec(1, 2, wspace=0.22).subplots())
    label = label_text(result["label"], result["label_name"])
    figure.suptitle(title or f"label {label}; heatmaps: {result['curve']} orders", fontsize=10)
    return figure


def plot_comparison_curves(result: dict, axes=None):
    """The insertion and deletion curves of every method in a comparison ``result`` (see
    :func:`plot_comparison`), one line per method with its AUC in the legend, on two ``axes``. Returns the figure."""
    text = 7  # the legend's font size: larger on a figure of its own, which is shown smaller
    if axes is None:
        figure = new_figure(8.4, 3.4)
        axes = figure.subplots(1, 2)
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
        text = 8
    n_players = result["grid"][0] * result["grid"][1]
    for ax, curve in zip(axes, CURVES):
        for name in result["methods"]:
            record = result["methods"][name][curve]
            ax.plot(range(len(record["probabilities"])), record["probabilities"],
                    label=f"{name} ({record['auc']:.2f})", linewidth=1.4)
        ax.set_xlabel(f"players {'inserted' if curve == 'insertion' else 'deleted'} (of {n_players})")
        ax.set_ylabel("p(label)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, n_players)
        ax.grid(alpha=0.3)
        ax.set_title(f"{curve} curve (legend: AUC)", fontsize=text + 2)
        ax.legend(fontsize=text, loc="lower right" if curve == "insertion" else "upper right")
    return axes[0].figure
