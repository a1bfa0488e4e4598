"""One explanation's heatmap over the picture the model saw."""

from __future__ import annotations

import numpy as np

from ._figure import new_figure

__all__ = ["draw_heatmap", "plot_explanation"]


def _picture(image) -> np.ndarray | None:
    if image is None:
        return None
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def explanation_picture(explanation, image=None) -> np.ndarray | None:
    """``image``, else the model's view of the explained image, else that image, as an (H, W, 3) array; or None."""
    if image is None:
        image = explanation.display_image if explanation.display_image is not None else explanation.pil_image
    return _picture(image)


def draw_heatmap(ax, heat: np.ndarray, image=None, title: str | None = None, hide_zero: bool = False) -> None:
    """Draw ``heat`` (rows, cols) over ``image`` (the model's input view) on ``ax``; the cells tile the picture."""
    heat = np.asarray(heat, dtype=np.float32)
    shown = np.ma.masked_equal(heat, 0.0) if hide_zero else heat
    picture = _picture(image)
    vmax = max(float(heat.max()) if heat.size else 0.0, 1.0)
    if picture is not None:
        height, width = picture.shape[:2]
        extent = (0, width, height, 0)  # the same pixel edges for picture and heat
        ax.imshow(picture, interpolation="nearest", extent=extent)
        ax.imshow(shown, cmap="jet", alpha=0.5, extent=extent, interpolation="nearest", vmin=0, vmax=vmax)
    else:
        ax.imshow(shown, cmap="jet", interpolation="nearest", vmin=0, vmax=vmax)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_explanation(explanation, image=None, ax=None, title: str | None = None):
    """The heatmap of an :class:`moxi_hf.Explanation` over ``image`` (default: its model view). Returns the figure."""
    if ax is None:
        figure = new_figure(4, 4.3)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    label = explanation.label_text
    draw_heatmap(ax, explanation.heatmap_array, explanation_picture(explanation, image),
                 title or f"{explanation.method} ({explanation.curve})\nlabel {label}: "
                          f"{explanation.patches_needed} players needed")
    return figure
