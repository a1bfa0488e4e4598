"""The dataset card (README.md) of an artifact folder, from ``huggingface_hub``'s card template machinery."""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets import ClassLabel

from ..fileio import atomic_write, read_json
from ..secrets import scrub_secrets
from .schema import (
    CARD_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    DATA_FILE,
    IMAGES_FILE,
    PLOTS_DIR,
    ROW_COLUMNS,
    ZERO_SHOT_COLUMNS,
    image_features,
    row_features,
)

__all__ = ["CARD_TAGS", "PAPER_URL", "auc_table", "card_text", "iter_curves", "write_card"]

CARD_TAGS = ["explainability", "interpretability", "moxi", "shapley", "image-classification"]
TEMPLATE_PATH = Path(__file__).with_name("card_template.md")
#: the MoXI paper (CVPR 2024), linked from dataset cards and the web page
PAPER_URL = "https://arxiv.org/abs/2401.03785"
_CITATION = """@inproceedings{kosuke2024identifying,
  author    = {Kosuke Sumiyasu and Kazuhiko Kawamoto and Hiroshi Kera},
  title     = {Identifying Important Group of Pixels using Interactions},
  booktitle = {Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}"""
_CURVE_ENTRY_KEYS = ("accuracy", "confidence", "auc", "confidence_auc", "num_images")


def iter_curves(curves: dict):
    """Yield ``(method, curve, entry)`` from ``curves[method][curve]`` (also accepts flat ``"method/curve"`` keys)."""
    for key, value in (curves or {}).items():
        if not isinstance(value, dict):
            continue
        if any(name in value for name in _CURVE_ENTRY_KEYS):
            method, _, curve = str(key).replace(":", "/").rpartition("/")
            yield method or str(key), curve, value
        else:
            for curve, entry in value.items():
                if isinstance(entry, dict):
                    yield str(key), str(curve), entry


def auc_table(curves: dict) -> dict[str, dict[str, dict]]:
    """``{method: {curve: {"auc", "confidence_auc", "num_images"}}}`` from a curves dict (missing values are None)."""
    table: dict[str, dict[str, dict]] = {}
    for method, curve, entry in iter_curves(curves):
        table.setdefault(method, {})[curve] = {key: entry.get(key) for key in ("auc", "confidence_auc", "num_images")}
    return table


def looks_like_repo_id(value) -> bool:
    import re

    return (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) is not None
            and not Path(value).exists() and ".." not in value)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _format_value(value) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(item) for item in value) if len(value) <= 12 else (
            ", ".join(str(item) for item in value[:10]) + f", … ({len(value)} in all)")
    elif isinstance(value, dict):
        text = ", ".join(f"{key}={item if not isinstance(item, (dict, list)) else json.dumps(item)}"
                         for key, item in value.items())
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _feature_type(feature) -> str:
    if isinstance(feature, ClassLabel):
        return f"class label ({feature.num_classes} names)"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list[{getattr(inner, 'dtype', inner)}]"
    return str(getattr(feature, "dtype", type(feature).__name__.lower()))


def _fmt(value) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _results(config: dict, curves: dict) -> list[list[str]]:
    table = auc_table(curves)
    listed = config.get("methods") or []
    order = [m for m in listed if m in table] + [m for m in table if m not in listed]
    rows = []
    for method in order:
        ins, dele = table[method].get("insertion", {}), table[method].get("deletion", {})
        images = ins.get("num_images") if ins.get("num_images") is not None else dele.get("num_images")
        rows.append([method, _fmt(ins.get("auc")), _fmt(dele.get("auc")), _fmt(ins.get("confidence_auc")),
                     _fmt(dele.get("confidence_auc")), str(images if images is not None else "–")])
    return rows


def _interaction_shares(curves: dict) -> list[list[str]]:
    """Rows ``[method, curve, share, images]`` for the entries that have an ``interaction_share``."""
    return [[method, curve, _fmt(entry["interaction_share"]), str(entry.get("interaction_share_images", "–"))]
            for method, curve, entry in iter_curves(curves)
            if isinstance(entry, dict) and entry.get("interaction_share") is not None]


def card_text(config: dict, curves: dict, num_rows: int, label_names: list[str] | None = None,
              plots: list[str] | None = None, license: str | None = None, has_images: bool = False) -> str:
    """The dataset card (YAML metadata + Markdown body) of an artifact folder, as text.

    ``has_images``: the folder has ``data/images.parquet``; ``config["pictures"] == "rows"``: the
    rows carry a ``picture`` column.
    """
    in_rows = config.get("pictures") == "rows"
    zero_shot = config.get("candidate_labels") is not None
    from huggingface_hub import DatasetCard, DatasetCardData

    model, dataset = config.get("model"), config.get("dataset")
    pretty = "MoXI explanations" + (f" of {Path(str(model)).name}" if model else "")
    extra = {"base_model": model} if looks_like_repo_id(model) else {}
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}]
    if has_images:
        configs.append({"config_name": "images", "data_files": [{"split": "train", "path": IMAGES_FILE}]})
    data = DatasetCardData(
        license=license or config.get("license") or "other",
        pretty_name=pretty,
        task_categories=["zero-shot-image-classification" if zero_shot else "image-classification"],
        size_categories=[_size_category(num_rows)],
        source_datasets=[dataset] if looks_like_repo_id(dataset) else None,
        tags=list(CARD_TAGS),
        configs=configs,
        dataset_info=[{"config_name": "default", "features": row_features(label_names, zero_shot=zero_shot)._to_yaml_list()},
                      {"config_name": "images", "features": image_features()._to_yaml_list()}]
        if has_images else {"features": row_features(label_names, in_rows, zero_shot)._to_yaml_list()},
        **extra,
    )
    settings = [(key, _format_value(value)) for key, value in config.items()
                if key not in ("versions", "label_names", "interrupted") and value is not None
                and value not in ({}, [], "")]
    interrupted = config.get("interrupted") if isinstance(config.get("interrupted"), dict) else None
    if label_names:
        settings.append(("classes", _format_value(list(label_names))))
    settings.append(("rows", str(num_rows)))
    versions = config.get("versions")
    features = row_features(label_names, zero_shot=zero_shot)
    described = {**ROW_COLUMNS, **(ZERO_SHOT_COLUMNS if zero_shot else {})}
    columns = [(name, _feature_type(features[name]), meaning) for name, meaning in described.items()]
    if has_images or in_rows:
        columns.append(("picture" + ("" if in_rows else " (config `images`)"), "image",
                        "the picture the model saw (resized and cropped by its processor), PNG or JPEG bytes"))
    source = (f" on `{dataset}`" + (f" ({config['split']} split)" if config.get("split") else "")) if dataset else ""
    card = DatasetCard.from_template(
        data, template_str=TEMPLATE_PATH.read_text(encoding="utf-8"),
        pretty_name=pretty, model=model or "unknown", source=source, paper_url=PAPER_URL,
        settings=settings,
        interrupted=interrupted,
        versions=", ".join(f"{name} {version}" for name, version in versions.items()) if isinstance(versions, dict)
        else "",
        results=_results(config, curves),
        shares=_interaction_shares(curves),
        plots=[{"stem": Path(plot).stem, "path": plot} for plot in plots or []],
        data_file=DATA_FILE, images_file=IMAGES_FILE if has_images else None, curves_file=CURVES_FILE,
        config_file=CONFIG_FILE, columns=columns, citation=_CITATION,
    )
    return str(card)


def write_card(output_dir: str | os.PathLike, config: dict | None = None, curves: dict | None = None,
               label_names: list[str] | None = None, num_rows: int | None = None,
               license: str | None = None) -> Path:
    """Write ``output_dir/README.md`` (a ``huggingface_hub.DatasetCard``) atomically; returns its path.

    Missing arguments are read from the folder: ``config.json``, ``curves.json``, the row count of
    ``data/explanations.parquet``; ``label_names`` default to ``config["label_names"]``. The plots
    are the ``plots/*.png`` present in the folder.
    """
    from huggingface_hub import DatasetCard

    output_dir = Path(output_dir)
    if config is None:
        config = read_json(output_dir / CONFIG_FILE, {})
    if curves is None:
        curves = read_json(output_dir / CURVES_FILE, {})
    if label_names is None:
        label_names = config.get("label_names")
    if num_rows is None:
        data_file = output_dir / DATA_FILE
        if data_file.is_file():
            import pyarrow.parquet as pq

            num_rows = pq.ParquetFile(data_file).metadata.num_rows
        else:
            num_rows = 0
    plots = sorted(path.relative_to(output_dir).as_posix() for path in (output_dir / PLOTS_DIR).glob("*.png")
                   if not path.name.startswith("."))
    text = card_text(scrub_secrets(config), curves, num_rows, label_names, plots, license,
                     has_images=(output_dir / IMAGES_FILE).is_file())
    card = DatasetCard(text)  # parses the YAML: a broken card fails here, not on the Hub
    return atomic_write(output_dir / CARD_FILE, str(card))
