"""The hidden resume state of an evaluation in ``OUTPUT/.partial/``: the selection and one file per finished image.

Each finished image is written atomically to ``.partial/images/NNNNNN.json`` (hidden: never loaded as
data, never uploaded); a rerun of the same configuration skips finished images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..artifacts import PARTIAL_DIR
from ..fileio import atomic_write, read_json

__all__ = ["SELECTION_FILE", "count_finished", "read_image_result", "read_selection", "remove_stale_temporaries",
           "write_image_result", "write_selection"]

SELECTION_FILE = "selection.json"


def _image_file(output_dir: Path, position: int) -> Path:
    return output_dir / PARTIAL_DIR / "images" / f"{position:06d}.json"


def read_selection(output_dir: Path) -> dict | None:
    """The images a previous run of this evaluation selected, or None."""
    return read_json(output_dir / PARTIAL_DIR / SELECTION_FILE)


def write_selection(output_dir: Path, selection: dict) -> None:
    atomic_write(output_dir / PARTIAL_DIR / SELECTION_FILE, json.dumps(selection) + "\n")


def remove_stale_temporaries(output_dir: Path) -> None:
    """Temporaries left by a run killed while writing an image's result."""
    for stale in (output_dir / PARTIAL_DIR / "images").glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def write_image_result(output_dir: Path, position: int, result: dict) -> None:
    """A finished image's rows (and its selection entry), written atomically."""
    atomic_write(_image_file(output_dir, position), json.dumps(result, separators=(",", ":")) + "\n")


def read_image_result(output_dir: Path, position: int, expected: dict, n_rows: int) -> dict | None:
    """A finished image's result, or None when missing or not matching the selection."""
    path = _image_file(output_dir, position)
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if (result.get("dataset_index") != expected["dataset_index"] or result.get("label") != expected["label"]
            or len(result.get("rows", [])) != n_rows):
        return None
    return result


def count_finished(output_dir: Path) -> int:
    folder = output_dir / PARTIAL_DIR / "images"
    if not folder.is_dir():
        return 0
    return sum(1 for name in os.listdir(folder) if name.endswith(".json") and not name.startswith("."))
