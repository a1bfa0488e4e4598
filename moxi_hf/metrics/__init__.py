"""Evaluation metrics: insertion/deletion curves, their AUC, and the curves summary of many images."""

from .aggregate import CURVE_KEYS, aggregate_curves
from .curves import CurveOutput, auc, curve_coalitions, heatmap_from_order, measure_curves, patches_needed

__all__ = ["CURVE_KEYS", "CurveOutput", "aggregate_curves", "auc", "curve_coalitions", "heatmap_from_order",
           "measure_curves", "patches_needed"]
