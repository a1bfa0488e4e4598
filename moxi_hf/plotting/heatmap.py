"""One explanation's heatmap over the picture the model saw, coloured by rank in the order, with its legend.

The heat of an explanation is the "patches needed" ramp (``needed - j`` for the j-th player of the order,
0 for the rest), so a cell's rank in the order is ``max(heat) - heat + 1``. The players needed are drawn in
one hue, darkest for rank 1, outlined, over a pale grey copy of the picture (the colours stay readable on
dark and light images alike); the other cells show the picture alone.
"""

from __future__ import annotations

import textwrap

import numpy as np

from ._figure import new_figure

__all__ = ["RANK_LABEL", "add_rank_colorbar", "draw_heatmap", "plot_explanation", "rank_map"]

#: what the colour scale of every heatmap means
RANK_LABEL = "rank in the order (1 = most important)"
#: the colour of ranks 1 (last entry) .. the last rank shown (first entry): a range of matplotlib's "Reds"
_RANK_RANGE = (0.28, 0.92)
_RANK_ALPHA = 0.72
_OUTLINE = "#2b0a0a"


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


def pale(picture: np.ndarray) -> np.ndarray:
    """A grey, light copy of ``picture`` (H, W, 3) for colour overlays: its luminance mapped to [0.42, 0.95]."""
    values = np.asarray(picture, dtype=np.float64)
    if values.max(initial=0.0) > 1.0:
        values = values / 255.0
    luminance = values[..., :3] @ np.array([0.299, 0.587, 0.114]) if values.ndim == 3 else values
    return 0.42 + 0.53 * luminance


def rank_map(heat) -> np.ma.MaskedArray:
    """(rows, cols) rank of each player in the order (1 = first), from the heat ramp; masked where heat is 0."""
    heat = np.asarray(heat, dtype=np.float64)
    top = float(heat.max()) if heat.size else 0.0
    return np.ma.masked_where(heat <= 0, np.rint(top - heat + 1.0))


def _rank_scale(max_rank: int):
    """(colormap, norm) with one colour per rank 1..max_rank, rank 1 the darkest."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    low, high = _RANK_RANGE
    colours = colormaps["Reds"](np.linspace(high, low, max_rank) if max_rank > 1 else [high])
    return ListedColormap(colours), BoundaryNorm(np.arange(0.5, max_rank + 1.0), max_rank)


def _ink(colour) -> str:
    """Black or white, whichever reads on ``colour`` (an RGBA tuple) blended over the pale picture."""
    red, green, blue = colour[:3]
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.55 else "black"


def draw_heatmap(ax, heat: np.ndarray, image=None, title: str | None = None, max_rank: int | None = None,
                 numbered: int = 0):
    """Draw ``heat`` (rows, cols, the "patches needed" ramp) over ``image`` (the model's input view) on ``ax``.

    The cells tile the picture. ``max_rank``: the rank given the lightest colour (default: this heat's
    last rank; give the largest of several heatmaps to colour them on one scale). ``numbered``: write
    the rank in the cells of the first ``numbered`` players. Returns the ScalarMappable of the colour
    scale (for :func:`add_rank_colorbar`).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Rectangle

    ranks = rank_map(heat)
    rows, cols = ranks.shape
    max_rank = int(max_rank or max(int(ranks.max()) if ranks.count() else 1, 1))
    colormap, norm = _rank_scale(max_rank)
    picture = _picture(image)
    height, width = picture.shape[:2] if picture is not None else (rows, cols)
    extent = (0, width, height, 0)  # the same pixel edges for picture and heat
    background = pale(picture) if picture is not None else np.ones((rows, cols))
    ax.imshow(background, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    ax.imshow(ranks, cmap=colormap, norm=norm, alpha=_RANK_ALPHA, interpolation="nearest", extent=extent)
    cell_h, cell_w = height / rows, width / cols
    for row, col in zip(*np.nonzero(~np.ma.getmaskarray(ranks))):
        rank = int(ranks[row, col])
        ax.add_patch(Rectangle((col * cell_w, row * cell_h), cell_w, cell_h, fill=False, edgecolor=_OUTLINE,
                               linewidth=1.4 if rank == 1 else 0.7))
        if rank <= numbered:
            ax.text((col + 0.5) * cell_w, (row + 0.5) * cell_h, str(rank), ha="center", va="center",
                    fontsize=7 if rank < 10 else 6, fontweight="bold", color=_ink(colormap(norm(rank))))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ScalarMappable(norm=norm, cmap=colormap)


def add_rank_colorbar(figure, mappable, axes, orientation: str = "vertical", **kwargs):
    """The legend of :func:`draw_heatmap`'s colours beside ``axes`` (one axes or a list): rank 1 at the top
    (or left), whole ranks only, labelled :data:`RANK_LABEL`. Returns the colorbar."""
    max_rank = int(mappable.norm.boundaries[-1] - 0.5)
    colorbar = figure.colorbar(mappable, ax=axes, orientation=orientation, **kwargs)
    if max_rank <= 10:
        ticks = list(range(1, max_rank + 1))
    else:
        step = int(np.ceil(max_rank / 6 / 5) * 5)
        ticks = sorted({1, max_rank, *range(step, max_rank - step // 2, step)})
    colorbar.set_ticks(ticks)
    colorbar.ax.tick_params(labelsize=8, length=2)
    colorbar.outline.set_linewidth(0.5)
    if orientation == "vertical":
        colorbar.ax.invert_yaxis()
    colorbar.set_label(RANK_LABEL, fontsize=8)
    return colorbar


def plot_explanation(explanation, image=None, ax=None, title: str | None = None, max_rank: int | None = None):
    """The heatmap of an :class:`moxi_hf.Explanation` over ``image`` (default: its model view). Returns the figure.

    Drawn on its own figure, it has a colour legend and the ranks of the first players written in their
    cells; on a given ``ax`` the caller adds the legend (``max_rank``: as :func:`draw_heatmap`).
    """
    own = ax is None
    if own:
        figure = new_figure(3.7, 3.4)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    if title is None:
        sentence = "\n".join(textwrap.wrap(explanation.needed_text, 40))
        title = f"{explanation.method} ({explanation.curve})\n{sentence}"
    scale = draw_heatmap(ax, explanation.heatmap_array, explanation_picture(explanation, image), title,
                         max_rank=max_rank, numbered=9 if own else 0)
    if own:
        add_rank_colorbar(figure, scale, ax, fraction=0.046, pad=0.03)
    return figure
