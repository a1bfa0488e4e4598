"""The heatmap figure shared by `moxi explain`, `moxi compare`, evaluation plots and the web page: a rank scale
with its legend, readable over dark and light pictures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from moxi_hf import Explanation
from moxi_hf.plotting import RANK_LABEL, plot_comparison, plot_explanation, plot_heatmap_grid
from moxi_hf.plotting.heatmap import rank_map

GRID = (4, 4)
ORDER = [5, 10, 0, 15] + [i for i in range(16) if i not in (5, 10, 0, 15)]


def _explanation(needed: int = 3, picture=None, method: str = "moxi") -> Explanation:
    heat = np.zeros(16)
    heat[ORDER[:needed]] = needed - np.arange(needed)  # the "patches needed" ramp
    explanation = Explanation(method=method, curve="insertion", label=3, order=ORDER,
                              heatmap=heat.reshape(GRID).tolist(), patches_needed=needed, grid=GRID,
                              curve_predictions=[0] * needed + [3] * (17 - needed), predicted=3)
    explanation.display_image = picture
    return explanation


def _pixels(figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float)


def _cell_colour(figure, ax, player: int, size: int = 64) -> np.ndarray:
    """The mean rendered colour near a corner of a player's cell, away from its rank number (the picture is
    ``size`` pixels a side)."""
    pixels = _pixels(figure)
    row, col = divmod(player, GRID[1])
    cell = size / GRID[0]
    x, y = ax.transData.transform(((col + 0.25) * cell, (row + 0.25) * cell))
    height = pixels.shape[0]
    x, y = int(round(x)), int(round(height - y))
    return pixels[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).mean(axis=0)


def test_ranks_come_from_the_heat_ramp():
    ranks = rank_map(_explanation(3).heatmap_array)
    assert ranks[1, 1] == 1 and ranks[2, 2] == 2 and ranks[0, 0] == 3
    assert ranks.mask.sum() == 13  # the players not needed have no colour


def test_the_heatmap_has_a_rank_legend_with_rank_one_first():
    figure = plot_explanation(_explanation(3, np.zeros((64, 64, 3), np.uint8)))
    heat_ax, legend = figure.axes
    assert legend.get_ylabel() == RANK_LABEL
    assert [tick.get_text() for tick in legend.get_yticklabels()] == ["1", "2", "3"]
    assert legend.get_ylim()[0] > legend.get_ylim()[1]  # rank 1 at the top
    assert sorted(text.get_text() for text in heat_ax.texts) == ["1", "2", "3"]  # the ranks, in their cells
    assert "3 of 16 patches needed to predict 3" in heat_ax.get_title()


@pytest.mark.parametrize("shade", [0, 255])
def test_the_first_patch_stands_out_on_dark_and_light_pictures(shade):
    picture = np.full((64, 64, 3), shade, np.uint8)
    figure = plot_explanation(_explanation(3, picture))
    ax = figure.axes[0]
    first, second, unneeded = (_cell_colour(figure, ax, player) for player in (ORDER[0], ORDER[1], ORDER[5]))
    assert np.linalg.norm(first - shade) > 120  # far from the picture's own colour, black or white
    assert np.linalg.norm(first - unneeded) > 80  # and from the cells around it
    assert np.linalg.norm(second - unneeded) > 40
    assert first.sum() < second.sum()  # rank 1 is the darkest: the scale reads as rank
    assert first[0] > first[1] + 40 and second[0] > second[1] + 20  # one hue (red) for every rank


def test_the_comparison_sheet_colours_every_method_on_one_rank_scale():
    picture = np.zeros((64, 64, 3), np.uint8)
    record = {"probabilities": [0.1] * 17, "auc": 0.1}
    result = {"label": 3, "label_name": None, "predicted": 3, "predicted_name": None, "grid": list(GRID),
              "curve": "insertion", "display_image": picture,
              "methods": {name: {"heatmap": _explanation(needed, picture, name), "insertion": record,
                                 "deletion": record} for name, needed in (("moxi", 2), ("gradcam", 9))}}
    figure = plot_comparison(result)
    legends = [ax for ax in figure.axes if ax.get_ylabel() == RANK_LABEL]
    assert len(legends) == 1 and legends[0].get_ylim() == pytest.approx((9.5, 0.5))
    moxi_ax, gradcam_ax = (ax for ax in figure.axes if ax.get_title().split("\n")[0] in ("moxi", "gradcam"))
    same = _cell_colour(figure, moxi_ax, ORDER[0]), _cell_colour(figure, gradcam_ax, ORDER[0])
    assert np.abs(same[0] - same[1]).max() < 3  # rank 1 has one colour in every heatmap


def test_the_heatmap_grid_has_one_legend():
    rows = [{"dataset_index": 0, "method": name, "curve": "insertion", "label": 3, "grid_rows": 4, "grid_cols": 4,
             "heatmap": np.asarray(_explanation(needed).heatmap).ravel().tolist(), "patches_needed": needed}
            for name, needed in (("moxi", 2), ("gradcam", 5))]
    figure = plot_heatmap_grid(rows, ["moxi", "gradcam"], "insertion", {0: np.zeros((64, 64, 3), np.uint8)})
    legends = [ax for ax in figure.axes if ax.get_ylabel() == RANK_LABEL]
    assert len(legends) == 1 and legends[0].get_ylim() == pytest.approx((5.5, 0.5))
