"""Per-image curves (artifact rows) averaged into the ``curves.json`` summary, with AUC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .curves import auc

__all__ = ["CURVE_KEYS", "aggregate_curves"]

#: keys of one summary entry (``curves[method][curve]``); lists are over k = 0..num_players
CURVE_KEYS = ("accuracy", "confidence", "auc", "confidence_auc", "num_images", "num_players")


def aggregate_curves(rows: Sequence[dict], methods: Sequence[str] | None = None,
                     curves: Sequence[str] | None = None) -> dict:
    """Mean accuracy/confidence curves per method × curve over the images, with AUC (mean over k = 0..P).

    ``rows``: dicts with ``method``, ``curve``, ``accuracy_curve`` and ``confidence_curve`` (over
    k = 0..P; rows whose order stopped early, i.e. whose curves are not P + 1 long when
    ``grid_rows``/``grid_cols`` are given, or have no curves, are skipped). ``methods``/``curves``
    fix the order (default: first appearance). Returns ``{method: {curve: {"accuracy": [P + 1],
    "confidence": [P + 1], "auc" (of the accuracy curve), "confidence_auc", "num_images",
    "num_players"}}}`` — the layout of ``curves.json``.
    """
    usable = [row for row in rows if _complete(row)]
    methods = list(methods) if methods is not None else list(dict.fromkeys(row["method"] for row in usable))
    curves = list(curves) if curves is not None else list(dict.fromkeys(row["curve"] for row in usable))
    result: dict[str, dict] = {}
    for method in methods:
        for curve in curves:
            chosen = [row for row in usable if row["method"] == method and row["curve"] == curve]
            if not chosen:
                continue
            accuracy = np.asarray([row["accuracy_curve"] for row in chosen], dtype=np.float64).mean(axis=0)
            confidence = np.asarray([row["confidence_curve"] for row in chosen], dtype=np.float64).mean(axis=0)
            result.setdefault(method, {})[curve] = {
                "accuracy": [float(value) for value in accuracy],
                "confidence": [float(value) for value in confidence],
                "auc": float(auc(accuracy)),
                "confidence_auc": float(auc(confidence)),
                "num_images": len(chosen),
                "num_players": len(accuracy) - 1,
            }
    return result


def _complete(row: dict) -> bool:
    accuracy, confidence = row.get("accuracy_curve"), row.get("confidence_curve")
    if accuracy is None or confidence is None or len(accuracy) == 0 or len(confidence) != len(accuracy):
        return False
    if row.get("grid_rows") and row.get("grid_cols"):
        return len(accuracy) == row["grid_rows"] * row["grid_cols"] + 1
    return True
