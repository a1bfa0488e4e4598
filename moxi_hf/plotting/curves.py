"""Mean insertion/deletion curves of an artifact folder (the ``curves.json`` summary)."""

from __future__ import annotations

import numpy as np

from ..options import CURVES
from ._figure import new_figure

__all__ = ["plot_curves"]


def plot_curves(curves: dict, metric: str = "accuracy", title: str | None = None):
    """Insertion and deletion panels, x = fraction of players, one line per method. Returns the figure.

    ``curves``: ``{method: {curve: {"accuracy", "confidence", "auc", "confidence_auc", "num_players"}}}``
    (:func:`moxi_hf.metrics.aggregate_curves`); ``metric``: ``accuracy`` or ``confidence``.
    """
    if metric not in ("accuracy", "confidence"):
        raise ValueError(f"unknown metric {metric!r}; choose accuracy or confidence")
    names = [curve for curve in CURVES if any(curve in by_curve for by_curve in curves.values())] or ["insertion"]
    figure = new_figure(5 * len(names), 4)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, curve in zip(axes, names):
        for method, by_curve in curves.items():
            if curve not in by_curve:
                continue
            entry = by_curve[curve]
            values = np.asarray(entry[metric])
            players = entry.get("num_players") or len(values) - 1
            x = np.arange(len(values)) / max(players, 1)
            auc_value = entry["auc" if metric == "accuracy" else f"{metric}_auc"]
            ax.plot(x, values, label=f"{method} (AUC {auc_value:.3f})", linewidth=1.6)
        verb = "inserted" if curve == "insertion" else "deleted"
        ax.set_title(f"{curve} (players {verb})")
        ax.set_xlabel(f"fraction of players {verb}")
        ax.set_ylabel("accuracy" if metric == "accuracy" else "mean p(label)")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
