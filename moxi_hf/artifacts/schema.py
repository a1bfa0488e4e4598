"""The artifact folder's fixed layout: file names, the row schema, and one row from an Explanation."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value
from datasets import Image as ImageFeature

from ..labels import template_value

__all__ = [
    "CARD_FILE", "CONFIG_FILE", "CURVES_FILE", "DATA_FILE", "IMAGES_FILE", "PARTIAL_DIR", "PICTURE_COLUMN", "PLOTS_DIR",
    "ROW_COLUMNS", "SCHEMA_VERSION", "ZERO_SHOT_COLUMNS",
    "explanation_to_row", "image_features", "public_name", "row_features", "row_to_explanation",
    "rows_to_dataset",
]

#: version of the folder layout written in config.json (folders without it are version 1: no images file;
#: version 2: no ``gains``/``interactions`` columns)
SCHEMA_VERSION = 3
DATA_FILE = "data/explanations.parquet"
#: the pictures the model saw, once per image (``datasets`` Image feature, encoded bytes)
IMAGES_FILE = "data/images.parquet"
CARD_FILE = "README.md"
CURVES_FILE = "curves.json"
CONFIG_FILE = "config.json"
PLOTS_DIR = "plots"
#: hidden resume state; never loaded as data, never uploaded
PARTIAL_DIR = ".partial"

#: column -> meaning. Lists are over players (row-major) or over k = 0..P.
ROW_COLUMNS = {
    "dataset_index": "index of the image in the source dataset split (or its position in the inputs)",
    "image": "the image's path relative to the folder given (a local file), or its identifier, when known",
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
    "gains": "MoXI's gain of each step along the order split as {total, self, interaction} (empty unless "
             "interactions were asked for)",
    "interactions": "{players, matrix}: I(i, j) among the first K players of the order, K×K (empty unless "
                    "interactions were asked for)",
}

#: columns the rows of a zero-shot model also have (a classifier's rows do not)
ZERO_SHOT_COLUMNS = {
    "candidate_labels": "the zero-shot model's candidate labels: its classes, which label and predicted index",
    "hypothesis_template": "the prompt template(s) each label was put into (several: their text features averaged)",
}

#: columns of IMAGES_FILE
IMAGE_COLUMNS = {
    "dataset_index": "the image's dataset_index in the rows",
    "image": "as in the rows",
    "picture": "the picture the model saw (resized and cropped by its image processor), PNG bytes",
}


def public_name(value: str | os.PathLike | None) -> str | None:
    """What a written file may say about a model or dataset: a local folder by its name, a Hub id as is."""
    if value is None:
        return None
    text = os.fspath(value)
    path = Path(text).expanduser()
    if path.exists() or os.path.isabs(text) or text.startswith(("./", "../", "~")):
        return path.resolve().name or text
    return text


#: parts of the ``gains`` column (see :func:`moxi_hf.interactions.gain_split`)
GAIN_KEYS = ("total", "self", "interaction")


#: the column that holds the picture in the rows when the pictures are small enough to repeat per row
PICTURE_COLUMN = "picture"


def row_features(label_names: list[str] | None = None, with_picture: bool = False, zero_shot: bool = False) -> Features:
    label = ClassLabel(names=list(label_names)) if label_names else Value("int64")
    features = Features({
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
        "gains": {key: Sequence(Value("float32")) for key in GAIN_KEYS},
        "interactions": {"players": Sequence(Value("int64")), "matrix": Sequence(Sequence(Value("float32")))},
    })
    if zero_shot:
        for name in ZERO_SHOT_COLUMNS:
            features[name] = Sequence(Value("string"))
    if with_picture:
        features[PICTURE_COLUMN] = ImageFeature()
    return features


def image_features() -> Features:
    return Features({"dataset_index": Value("int64"), "image": Value("string"), "picture": ImageFeature()})


def rows_to_dataset(rows: list[dict], label_names: list[str] | None = None,
                    pictures: dict[int, bytes] | None = None) -> Dataset:
    """Rows (dicts with ROW_COLUMNS keys) -> a ``datasets.Dataset`` with the fixed features.

    ``pictures``: dataset_index -> encoded picture, stored in a ``picture`` column (Image feature).
    """
    zero_shot = any(row.get("candidate_labels") is not None for row in rows)
    columns = {name: [row.get(name) for row in rows] for name in [*ROW_COLUMNS, *(ZERO_SHOT_COLUMNS if zero_shot else ())]}
    columns["scores"] = [list(value) if value is not None else [] for value in columns["scores"]]
    columns["image"] = [value if value is not None else "" for value in columns["image"]]
    if pictures is not None:
        columns[PICTURE_COLUMN] = [{"bytes": pictures.get(row["dataset_index"]), "path": None} for row in rows]
    features = row_features(label_names, with_picture=pictures is not None, zero_shot=zero_shot)
    return Dataset.from_dict(columns, features=features)


def explanation_to_row(explanation, dataset_index: int = 0, accuracy_curve=None, confidence_curve=None,
                       image: str | None = None) -> dict:
    """One row from an :class:`moxi_hf.Explanation`; curves default to the explanation's own.

    ``image``: the name to record (default: the explanation's ``image``, as given by the caller).
    """
    if accuracy_curve is None and explanation.curve_predictions is not None:
        accuracy_curve = [float(p == explanation.label) for p in explanation.curve_predictions]
    if confidence_curve is None:
        confidence_curve = explanation.curve_probabilities
    rows, cols = explanation.grid
    zero_shot = {}
    if explanation.candidate_labels is not None:
        template = explanation.hypothesis_template
        zero_shot = {"candidate_labels": list(explanation.candidate_labels),
                     "hypothesis_template": [template] if isinstance(template, str) else list(template or [])}
    return zero_shot | {
        "dataset_index": int(dataset_index),
        "image": image if image is not None else explanation.image,
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
        "gains": {key: list(explanation.gains[key]) for key in GAIN_KEYS} if explanation.gains else None,
        "interactions": ({"players": list(explanation.interactions["players"]),
                          "matrix": [list(row) for row in explanation.interactions["matrix"]]}
                         if explanation.interactions else None),
    }


def _name(label_names: list[str] | None, label: int | None) -> str | None:
    return label_names[label] if label_names and label is not None and 0 <= label < len(label_names) else None


def row_to_explanation(row: dict, label_names: list[str] | None = None, config: dict | None = None):
    """An :class:`moxi_hf.Explanation` from one row (of any schema version); ``config``: the folder's settings.

    The row keeps p(label) per k but not the predicted class per k, so ``curve_predictions`` is None.
    """
    from ..explanation import Explanation

    config = config or {}
    rows, cols = int(row["grid_rows"]), int(row["grid_cols"])
    heat = list(row["heatmap"])
    label = int(row["label"])
    return Explanation(
        method=row["method"],
        curve=row["curve"],
        label=label,
        label_name=_name(label_names, label),
        predicted=row.get("predicted"),
        predicted_name=_name(label_names, row.get("predicted")),
        order=[int(player) for player in row["order"]],
        scores=list(row["scores"]) if row.get("scores") else None,
        heatmap=[heat[r * cols:(r + 1) * cols] for r in range(rows)],
        patches_needed=int(row["patches_needed"]),
        grid=(rows, cols),
        curve_probabilities=list(row["confidence_curve"]) if row.get("confidence_curve") else None,
        model=config.get("model"),
        reward=config.get("reward"),
        masking=config.get("masking"),
        image=row.get("image") or None,
        gains={key: list(row["gains"][key]) for key in GAIN_KEYS} if row.get("gains") else None,
        interactions=({"players": list(row["interactions"]["players"]),
                       "matrix": [list(line) for line in row["interactions"]["matrix"]]}
                      if row.get("interactions") else None),
        candidate_labels=list(row["candidate_labels"]) if row.get("candidate_labels") is not None else None,
        hypothesis_template=template_value(row.get("hypothesis_template")),
    )
