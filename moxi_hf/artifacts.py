"""Explanation artifacts: per-image rows as Parquet, curves, config — a folder that is an HF dataset repo.

Layout of an artifact folder (evaluation runs and ``moxi explain`` outputs alike)::

    README.md                      dataset card (YAML metadata + run settings + AUC table + plots)
    data/explanations.parquet      one row per (image, method, curve), see ROW_COLUMNS
    curves.json                    per method × curve: accuracy/confidence per k, AUC, number of images
    config.json                    the run configuration, with package versions
    plots/*.png                    curves.png, heatmaps.png, ...

This module fixes the row schema; every writer goes through :func:`rows_to_dataset`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

__all__ = ["ROW_COLUMNS", "DATA_FILE", "explanation_to_row", "row_features", "rows_to_dataset", "write_json", "write_rows"]

DATA_FILE = "data/explanations.parquet"

#: column -> meaning. Lists are over players (row-major) or over k = 0..P.
ROW_COLUMNS = {
    "dataset_index": "index of the image in the source dataset split (or its position in the inputs)",
    "image": "file name / identifier of the image, when known",
    "label": "target class (true label in evaluation, prediction or --label in explain)",
    "predicted": "model prediction on the whole image",
    "method": "explanation method",
    "curve": "insertion or deletion",
    "order": "players, most important first",
    "scores": "per-player scores (empty when the method has none)",
    "heatmap": "per-player 'patches needed' heat, row-major over the players grid",
    "patches_needed": "players inserted until the label is predicted / deleted until it is not",
    "accuracy_curve": "1.0 when the prediction is the label after k = 0..P players inserted/deleted, else 0.0",
    "confidence_curve": "p(label) after k = 0..P players inserted/deleted",
    "grid_rows": "rows of the players grid",
    "grid_cols": "columns of the players grid",
}


def row_features(label_names: list[str] | None = None) -> Features:
    label = ClassLabel(names=list(label_names)) if label_names else Value("int64")
    return Features({
        "dataset_index": Value("int64"),
        "image": Value("string"),
        "label": label,
        "predicted": Value("int64"),
        "method": Value("string"),
        "curve": Value("string"),
        "order": Sequence(Value("int64")),
        "scores": Sequence(Value("float32")),
        "heatmap": Sequence(Value("float32")),
        "patches_needed": Value("int64"),
        "accuracy_curve": Sequence(Value("float32")),
        "confidence_curve": Sequence(Value("float32")),
        "grid_rows": Value("int64"),
        "grid_cols": Value("int64"),
    })


def rows_to_dataset(rows: list[dict], label_names: list[str] | None = None) -> Dataset:
    """Rows (dicts with ROW_COLUMNS keys) -> a ``datasets.Dataset`` with the fixed features."""
    columns = {name: [row.get(name) for row in rows] for name in ROW_COLUMNS}
    columns["scores"] = [list(value) if value is not None else [] for value in columns["scores"]]
    columns["image"] = [value if value is not None else "" for value in columns["image"]]
    return Dataset.from_dict(columns, features=row_features(label_names))


def write_rows(output_dir: str | os.PathLike, rows: list[dict], label_names: list[str] | None = None) -> Path:
    """Write rows to ``output_dir/data/explanations.parquet`` atomically; returns the path."""
    path = Path(output_dir) / DATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    rows_to_dataset(rows, label_names).to_parquet(str(temporary))
    os.replace(temporary, path)
    return path


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def explanation_to_row(explanation, dataset_index: int = 0, accuracy_curve=None, confidence_curve=None) -> dict:
    """One row from an :class:`moxi_hf.Explanation`; curves default to the explanation's own."""
    if accuracy_curve is None and explanation.curve_predictions is not None:
        accuracy_curve = [float(p == explanation.label) for p in explanation.curve_predictions]
    if confidence_curve is None:
        confidence_curve = explanation.curve_probabilities
    rows, cols = explanation.grid
    return {
        "dataset_index": int(dataset_index),
        "image": explanation.image,
        "label": int(explanation.label),
        "predicted": explanation.predicted,
        "method": explanation.method,
        "curve": explanation.curve,
        "order": list(explanation.order),
        "scores": explanation.scores,
        "heatmap": [value for row in explanation.heatmap for value in row],
        "patches_needed": int(explanation.patches_needed),
        "accuracy_curve": list(accuracy_curve or []),
        "confidence_curve": list(confidence_curve or []),
        "grid_rows": rows,
        "grid_cols": cols,
    }
