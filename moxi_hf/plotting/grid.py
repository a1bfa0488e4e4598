"""A grid of heatmaps: one row per image (its model view), one column per method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..labels import label_text
from ._figure import new_figure
from .heatmap import add_rank_colorbar, draw_heatmap

__all__ = ["plot_heatmap_grid"]


def plot_heatmap_grid(rows: Sequence[dict], methods: Sequence[str], curve: str, pictures: dict | None = None,
                      label_names: list[str] | None = None, max_images: int = 6):
    """Heatmaps of artifact ``rows`` for ``curve``: the first ``max_images`` images × ``methods``. Returns the figure.

    ``pictures``: dataset_index -> the model's view of that image (PIL or (H, W, 3) array); images
    without one show the heat alone.
    """
    pictures = pictures or {}
    by_key = {(row["dataset_index"], row["method"], row["curve"]): row for row in rows}
    indices = list(dict.fromkeys(row["dataset_index"] for row in rows if row["curve"] == curve))[:max_images]
    columns = len(methods) + 1
    shown = [row for row in rows if row["dataset_index"] in indices and row["curve"] == curve and row["method"] in methods]
    max_rank = max([int(row["patches_needed"]) for row in shown], default=1) or 1
    scale = None
    figure = new_figure(1.9 * columns, 2.0 * max(len(indices), 1))
    axes = figure.subplots(max(len(indices), 1), columns, squeeze=False)
    for r, index in enumerate(indices):
        picture = pictures.get(index)
        for c in range(columns):
            ax = axes[r][c]
            if c == 0:
                first = next((by_key[(index, m, curve)] for m in methods if (index, m, curve) in by_key), None)
                label = first["label"] if first else None
                known = label_names and label is not None and 0 <= label < len(label_names)
                name = label_text(label, label_names[label] if known else None)
                if picture is not None:
                    ax.imshow(np.asarray(picture), interpolation="nearest")
                ax.set_axis_off()
                ax.set_title(f"#{index} label {name}", fontsize=8)
                continue
            row = by_key.get((index, methods[c - 1], curve))
            if row is None:
                ax.set_axis_off()
                continue
            heat = np.asarray(row["heatmap"], dtype=np.float32).reshape(row["grid_rows"], row["grid_cols"])
            title = f"{methods[c - 1]}\n{row['patches_needed']} needed" if r == 0 else f"{row['patches_needed']} needed"
            scale = draw_heatmap(ax, heat, picture, title, max_rank=max_rank)
    figure.suptitle(f"{curve}: the players needed, coloured by rank in the order", fontsize=9)
    figure.tight_layout()
    if scale is not None:  # after the layout: the legend takes its room from the heatmaps, one scale for all
        add_rank_colorbar(figure, scale, list(axes.ravel()), fraction=0.03, pad=0.02)
    return figure
