"""Evaluation metrics: insertion/deletion curves and their AUC."""

from .curves import CurveOutput, auc, curve_coalitions, heatmap_from_order, measure_curves, patches_needed

__all__ = ["CurveOutput", "auc", "curve_coalitions", "heatmap_from_order", "measure_curves", "patches_needed"]
