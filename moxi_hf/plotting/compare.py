"""The comparison sheet of one image: a heatmap per method on top, insertion and deletion curves below."""

from __future__ import annotations

from ..labels import label_text
from ..options import CURVES
from ._figure import new_figure
from .heatmap import plot_explanation

__all__ = ["plot_comparison"]


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
    for ax, name in zip(heat_axes[1:], methods):
        explanation = result["methods"][name]["heatmap"]
        plot_explanation(explanation, image=image, ax=ax,
                         title=f"{name}\n{explanation.patches_needed}/{n_players} needed")
    curve_axes = bottom.subgridspec(1, 2, wspace=0.22).subplots()
    for ax, curve in zip(curve_axes, CURVES):
        for name in methods:
            record = result["methods"][name][curve]
            ax.plot(range(len(record["probabilities"])), record["probabilities"],
                    label=f"{name} ({record['auc']:.2f})", linewidth=1.4)
        ax.set_xlabel(f"players {'inserted' if curve == 'insertion' else 'deleted'} (of {n_players})")
        ax.set_ylabel("p(label)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, n_players)
        ax.grid(alpha=0.3)
        ax.set_title(f"{curve} curve (legend: AUC)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right" if curve == "insertion" else "upper right")
    label = label_text(result["label"], result["label_name"])
    figure.suptitle(title or f"label {label}; heatmaps: {result['curve']} orders", fontsize=10)
    return figure
