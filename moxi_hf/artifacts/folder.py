"""Writing an artifact folder (rows, pictures, curves, config, plots, card) and checking one."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_write, package_versions, write_json
from ..metrics import aggregate_curves
from ..secrets import SECRET_KEYS, scrub_secrets
from .card import write_card
from .schema import (
    CARD_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    DATA_FILE,
    IMAGES_FILE,
    PARTIAL_DIR,
    PLOTS_DIR,
    SCHEMA_VERSION,
    explanation_to_row,
    image_features,
    public_name,
    rows_to_dataset,
)

__all__ = ["SECRET_KEYS", "artifact_dir_problem", "check_artifact_dir", "is_artifact_dir", "save_artifacts",
           "save_explanations", "scrub_secrets", "write_images", "write_rows", "picture_layout", "encode_picture",
           "ROW_PICTURES_MAX_BYTES"]

#: config keys naming a model or dataset: written by folder name when local (see :func:`public_name`)
NAME_KEYS = ("model", "dataset")
_REQUIRED = (DATA_FILE, CONFIG_FILE, CARD_FILE)


#: pictures go into every row while all the copies together stay under this size; above, once each
#: in ``data/images.parquet`` (config ``images``), rows referring to them by ``dataset_index``
ROW_PICTURES_MAX_BYTES = 20_000_000


def write_rows(output_dir: str | os.PathLike, rows: list[dict], label_names: list[str] | None = None,
               pictures: dict[int, bytes] | None = None) -> Path:
    """Write rows to ``data/explanations.parquet`` atomically (a ``picture`` column when ``pictures`` are given)."""
    buffer = io.BytesIO()
    rows_to_dataset(rows, label_names, pictures).to_parquet(buffer)
    return atomic_write(Path(output_dir) / DATA_FILE, buffer.getvalue())


def write_images(output_dir: str | os.PathLike, pictures: Sequence[tuple[int, str | None, bytes]]) -> Path:
    """Write ``(dataset_index, image name, encoded picture)`` once each to ``data/images.parquet``.

    The bytes are stored with no file path, so the ``datasets`` Image feature (and the Hub's viewer)
    shows the picture and nothing of the local file system.
    """
    from datasets import Dataset

    columns = {
        "dataset_index": [int(index) for index, _, _ in pictures],
        "image": [name or "" for _, name, _ in pictures],
        "picture": [{"bytes": data, "path": None} for _, _, data in pictures],
    }
    buffer = io.BytesIO()
    Dataset.from_dict(columns, features=image_features()).to_parquet(buffer)
    return atomic_write(Path(output_dir) / IMAGES_FILE, buffer.getvalue())


def picture_layout(rows: list[dict], encoded: dict[int, bytes]) -> str:
    """``"rows"`` (a picture in every row) or ``"images"`` (once each, own config), chosen by the bytes written.

    A picture per row repeats each image once per method and curve; that is kept only while all
    the copies stay under :data:`ROW_PICTURES_MAX_BYTES`.
    """
    repeated = sum(len(encoded.get(row["dataset_index"], b"")) for row in rows)
    return "rows" if repeated <= ROW_PICTURES_MAX_BYTES else "images"


#: JPEG quality for pictures stored as JPEG
JPEG_QUALITY = 90


def encode_picture(picture) -> bytes:
    """PNG bytes of an RGB picture, or JPEG (quality 90) when that is less than half as large."""
    picture = picture.convert("RGB")
    png, jpeg = io.BytesIO(), io.BytesIO()
    picture.save(png, format="PNG", optimize=True)
    picture.save(jpeg, format="JPEG", quality=JPEG_QUALITY)
    return jpeg.getvalue() if 2 * len(jpeg.getvalue()) < len(png.getvalue()) else png.getvalue()


def _save_plots(output_dir: Path, plots) -> None:
    """``plots``: {name: matplotlib Figure | PNG path | PNG bytes} or an iterable of PNG paths."""
    if plots is None:
        return
    items = plots.items() if isinstance(plots, dict) else ((Path(p).name, p) for p in plots)
    for name, plot in items:
        name = str(name) if str(name).endswith(".png") else f"{name}.png"
        target = output_dir / PLOTS_DIR / Path(name).name
        if hasattr(plot, "savefig"):
            from ..plotting import save_figure

            save_figure(plot, target)
        elif isinstance(plot, (bytes, bytearray)):
            atomic_write(target, bytes(plot))
        elif Path(plot).resolve() != target.resolve():
            atomic_write(target, Path(plot).read_bytes())


def publishable_config(config: dict) -> dict:
    """``config`` without credentials, with local model/dataset folders by name and the schema version."""
    config = scrub_secrets(dict(config or {}))
    for key in NAME_KEYS:
        if isinstance(config.get(key), str):
            config[key] = public_name(config[key])
    config.setdefault("schema_version", SCHEMA_VERSION)
    return config


def save_artifacts(output_dir: str | os.PathLike, rows: list[dict], curves: dict | None, config: dict,
                   label_names: list[str] | None = None, plots=None, license: str | None = None,
                   pictures: Sequence[tuple[int, str | None, object]] | None = None) -> Path:
    """Write a complete artifact folder: rows (Parquet), pictures, curves.json, config.json, plots, then the card.

    ``curves``: the :func:`moxi_hf.metrics.aggregate_curves` summary (None: aggregated from ``rows``).
    ``config``: the run settings (JSON-able); credential-like keys are dropped, local model/dataset
    folders are written by name, and package versions are added under ``"versions"``. ``plots``:
    ``{name: Figure | path | bytes}`` or PNG paths, written to ``plots/``. ``pictures``:
    ``(dataset_index, name, PIL image)`` of the pictures the model saw: a ``picture`` column of the
    rows or ``data/images.parquet``, chosen by size (:func:`picture_layout`; ``config["pictures"]``
    records which). Every file is written atomically; the card comes last.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = publishable_config(config)
    if label_names is None:
        label_names = config.get("label_names")
    if label_names is not None:
        config["label_names"] = [str(name) for name in label_names]
    config.setdefault("versions", package_versions())
    if curves is None:
        curves = aggregate_curves(rows)
    encoded = {int(index): encode_picture(picture) for index, _, picture in pictures or ()}
    layout = picture_layout(rows, encoded) if encoded else None
    config["pictures"] = layout
    write_rows(output_dir, rows, label_names, encoded if layout == "rows" else None)
    stale = output_dir / IMAGES_FILE
    if layout == "images":
        write_images(output_dir, [(index, name, encoded[int(index)]) for index, name, _ in pictures])
    elif stale.is_file():
        stale.unlink()
    write_json(output_dir / CURVES_FILE, scrub_secrets(curves or {}))
    write_json(output_dir / CONFIG_FILE, config)
    _save_plots(output_dir, plots)
    write_card(output_dir, config, curves or {}, label_names, num_rows=len(rows), license=license)
    return output_dir


def save_explanations(output_dir: str | os.PathLike, explanations, model: str | None = None,
                      label_names: list[str] | None = None, dataset_indices: list[int] | None = None,
                      config: dict | None = None, plots=None, image_names: list[str | None] | None = None,
                      pictures: Sequence[tuple[int, str | None, object]] | None = None) -> Path:
    """Write ``moxi explain`` results as an artifact folder (rows, pictures, curves.json, config.json, card).

    One row per Explanation via :func:`explanation_to_row`. ``image_names`` (one per explanation)
    are what the rows record (default: each image's file name, never its folder). ``dataset_indices``
    default to the position of the explanation's image among the distinct images. Curves are
    averaged from the explanations' own curves where every player was ordered.
    """
    from .settings import candidate_settings, method_settings, run_settings

    explanations = list(explanations)
    if image_names is None:
        image_names = [os.path.basename(e.image) if e.image else None for e in explanations]
    if dataset_indices is None:
        seen: dict = {}
        dataset_indices = []
        for position, explanation in enumerate(explanations):
            key = explanation.image if explanation.image else ("#", position)
            dataset_indices.append(seen.setdefault(key, len(seen)))
    rows = [explanation_to_row(explanation, index, image=name)
            for explanation, index, name in zip(explanations, dataset_indices, image_names)]
    first = explanations[0] if explanations else None
    settings = run_settings(
        kind="explain",
        model=model or (first.model if first else None),
        methods=list(dict.fromkeys(e.method for e in explanations)),
        curves=list(dict.fromkeys(e.curve for e in explanations)),
        chosen=method_settings(explanations),
        num_images=len(set(dataset_indices)),
        reward=first.reward if first else None,
        masking=first.masking if first else None,
        players_grid=list(first.grid) if first else None,
        **(candidate_settings(first) if first else {}),
    )
    settings.update(config or {})
    return save_artifacts(output_dir, rows, aggregate_curves(rows), settings, label_names, plots, pictures=pictures)


def artifact_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete artifact folder (one line), or None when it is one."""
    path = Path(path)
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is a file, not an artifact folder"
    missing = [name for name in _REQUIRED if not (path / name).is_file()]
    if not missing:
        return None
    hint = "write it with moxi_hf.artifacts.save_artifacts (or run `moxi evaluate` / `moxi explain --output-dir`)"
    if missing == [CARD_FILE]:
        hint = "recreate the card with moxi_hf.artifacts.write_card(DIR)"
    elif (path / PARTIAL_DIR).is_dir():
        hint = f"it only holds unfinished evaluation results in {PARTIAL_DIR}/; let the evaluation finish first"
    return f"{path} is not a moxi artifact folder (missing {', '.join(missing)}); {hint}"


def is_artifact_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a complete artifact folder (data/explanations.parquet, config.json, README.md)."""
    return artifact_dir_problem(path) is None


def check_artifact_dir(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a complete artifact folder, else MoXIError saying what is missing."""
    from ..errors import MoXIError

    problem = artifact_dir_problem(path)
    if problem:
        raise MoXIError(problem)
    return Path(path)
