"""Explanation artifacts: a folder that is a Hugging Face dataset repo.

Layout (``moxi explain`` outputs and evaluation runs alike)::

    README.md                      dataset card (YAML metadata + run settings + AUC table + plots)
    data/explanations.parquet      one row per (image, method, curve), see ROW_COLUMNS
    data/images.parquet            the picture the model saw, once per image (config "images")
    curves.json                    per method × curve: accuracy/confidence per k, AUC, images, players
    config.json                    the run settings, schema_version, package versions
    plots/*.png                    curves.png, heatmaps.png, ...

- :mod:`.schema`: file names, the row schema, one row from an Explanation
- :mod:`.settings`: the run-settings dict of config.json
- :mod:`.card`: the dataset card
- :mod:`.folder`: writing and checking a folder
- :mod:`.loading`: :class:`Artifacts` / :func:`load_artifacts`
- :mod:`.hub`: :func:`push_artifacts`, a folder to a Hub dataset repo (``moxi push``)
- :mod:`.output_dir`: the output folders of the commands: what a run may write into and what it owns
"""

from __future__ import annotations

from ..fileio import package_versions, write_json
from ..metrics import CURVE_KEYS
from .card import CARD_TAGS, auc_table, card_text, iter_curves, write_card
from .checks import check_artifact_files
from .folder import (
    SECRET_KEYS,
    artifact_dir_problem,
    check_artifact_dir,
    is_artifact_dir,
    publishable_config,
    save_artifacts,
    save_explanations,
    scrub_secrets,
    write_images,
    write_rows,
)
from .hub import IGNORE_PATTERNS, push_artifacts, upload_file_list
from .loading import Artifacts, load_artifacts
from .output_dir import MANIFEST_FILE, OutputDir, prepare_output_dir
from .schema import (
    CARD_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    DATA_FILE,
    IMAGE_COLUMNS,
    IMAGES_FILE,
    PARTIAL_DIR,
    PLOTS_DIR,
    ROW_COLUMNS,
    SCHEMA_VERSION,
    ZERO_SHOT_COLUMNS,
    explanation_to_row,
    image_features,
    public_name,
    row_features,
    row_to_explanation,
    rows_to_dataset,
)
from .settings import explainer_settings, run_settings

__all__ = [
    "CARD_FILE",
    "CARD_TAGS",
    "CONFIG_FILE",
    "CURVES_FILE",
    "CURVE_KEYS",
    "DATA_FILE",
    "IMAGES_FILE",
    "IGNORE_PATTERNS",
    "IMAGE_COLUMNS",
    "MANIFEST_FILE",
    "PARTIAL_DIR",
    "PLOTS_DIR",
    "ROW_COLUMNS",
    "ZERO_SHOT_COLUMNS",
    "SCHEMA_VERSION",
    "SECRET_KEYS",
    "Artifacts",
    "OutputDir",
    "artifact_dir_problem",
    "auc_table",
    "card_text",
    "check_artifact_dir",
    "check_artifact_files",
    "explainer_settings",
    "explanation_to_row",
    "image_features",
    "is_artifact_dir",
    "iter_curves",
    "load_artifacts",
    "package_versions",
    "public_name",
    "prepare_output_dir",
    "publishable_config",
    "push_artifacts",
    "row_features",
    "row_to_explanation",
    "rows_to_dataset",
    "run_settings",
    "save_artifacts",
    "save_explanations",
    "scrub_secrets",
    "upload_file_list",
    "write_card",
    "write_images",
    "write_json",
    "write_rows",
]
