"""Insertion/deletion curves: one explanation's, or the means of an artifact folder (``curves.json``)."""

from __future__ import annotations

import numpy as np

from ..options import CURVES
from ._figure import new_figure

__all__ = ["plot_curves", "plot_explanation_curve"]


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


def plot_explanation_curve(explanation, ax=None):
    """p(label) after k players of an :class:`moxi_hf.Explanation`'s order were inserted or deleted.

    A dashed line marks the patches needed. Returns the figure.
    """
    if ax is None:
        figure = new_figure(4.6, 3.2)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
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
    return figure
