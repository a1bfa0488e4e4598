"""Reading an artifact folder's files as :func:`moxi_hf.load_artifacts` reads them, before using them.

Shared by loading and by ``moxi push`` (which checks a folder before any request): every problem is
one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import MoXIError
from .folder import check_artifact_dir
from .schema import CARD_FILE, CONFIG_FILE, CURVES_FILE, DATA_FILE, IMAGES_FILE

__all__ = ["REQUIRED_ROW_COLUMNS", "check_artifact_files", "first_line"]

#: columns every version of the rows has (what :meth:`Artifacts.explanations` and the plots read)
REQUIRED_ROW_COLUMNS = ("dataset_index", "label", "method", "curve", "order", "heatmap", "patches_needed",
                        "grid_rows", "grid_cols")
#: rows read at a time while a Parquet file is checked (every page is decoded, never the whole file at once)
_CHECK_BATCH = 1024


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _json_object(folder: Path, name: str, missing: dict | None = None) -> dict:
    path = folder / name
    if missing is not None and not path.is_file():
        return missing
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MoXIError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise MoXIError(f"{path} does not hold a JSON object (it holds a {type(value).__name__})")
    return value


def _check_parquet(folder: Path, name: str, required: Sequence[str]) -> None:
    """Every page of ``folder/name`` decoded, its columns checked; MoXIError naming the file otherwise."""
    import pyarrow.parquet as pq

    path = folder / name
    try:
        table = pq.ParquetFile(path)
        for _ in table.iter_batches(batch_size=_CHECK_BATCH):
            pass
    except Exception as error:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError and more for damaged files
        raise MoXIError(f"{path} is not a readable Parquet file ({first_line(error)})") from None
    missing = [column for column in required if column not in table.schema_arrow.names]
    if missing:
        raise MoXIError(f"{path} holds no moxi rows: no column {', '.join(missing)}")


def check_artifact_files(path: str | os.PathLike) -> tuple[dict, dict, object]:
    """Read every file :func:`moxi_hf.load_artifacts` reads, as it reads them: ``(config, curves, card)``.

    Raises :class:`MoXIError`, one line naming the file and what is wrong with it: a missing file,
    JSON that does not parse or is not an object, a card whose metadata is not YAML, a Parquet file
    that does not decode or lacks the row columns. ``moxi push`` runs it before any request.
    """
    from huggingface_hub import DatasetCard

    path = check_artifact_dir(path)
    config = _json_object(path, CONFIG_FILE)
    curves = _json_object(path, CURVES_FILE, missing={})
    try:
        card = DatasetCard.load(path / CARD_FILE)
    except UnicodeDecodeError as error:
        raise MoXIError(f"{path / CARD_FILE} is not UTF-8 text ({error})") from None
    except Exception as error:  # noqa: BLE001 - YAML errors of the metadata block come in many kinds
        raise MoXIError(f"{path / CARD_FILE} has a metadata block that is not valid YAML "
                        f"({' '.join(str(error).split())})") from None
    _check_parquet(path, DATA_FILE, REQUIRED_ROW_COLUMNS)
    if (path / IMAGES_FILE).is_file():
        _check_parquet(path, IMAGES_FILE, ("dataset_index", "picture"))
    return config, curves, card
