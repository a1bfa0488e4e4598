"""Figures, each a ``matplotlib.figure.Figure`` (no pyplot, the user's backend is never switched).

- :func:`plot_explanation`: one explanation's heatmap over the model's view of the image
- :func:`plot_comparison`: several methods on one image, with their curves
  (:func:`plot_comparison_curves`: the curves alone)
- :func:`plot_curves`: mean insertion/deletion curves of an artifact folder
- :func:`plot_explanation_curve`: one explanation's insertion or deletion curve
- :func:`plot_heatmap_grid`: heatmaps of many images × methods
- :func:`model_view`: the picture the model saw (re-exported from :mod:`moxi_hf.images`)
"""

from ._figure import png_bytes, save_figure
from .compare import plot_comparison, plot_comparison_curves
from .curves import plot_curves, plot_explanation_curve
from .grid import plot_heatmap_grid
from .heatmap import RANK_LABEL, add_rank_colorbar, draw_heatmap, plot_explanation
from .view import model_view, pixels_to_picture

__all__ = ["RANK_LABEL", "add_rank_colorbar", "draw_heatmap", "model_view", "pixels_to_picture", "plot_comparison",
           "plot_comparison_curves", "plot_curves", "plot_explanation", "plot_explanation_curve", "plot_heatmap_grid",
           "png_bytes", "save_figure"]
