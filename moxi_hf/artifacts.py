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
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

__all__ = [
    "ROW_COLUMNS", "DATA_FILE", "explanation_to_row", "row_features", "rows_to_dataset", "write_json", "write_rows",
    "CARD_FILE", "CURVES_FILE", "CONFIG_FILE", "PLOTS_DIR", "PARTIAL_DIR", "CURVE_KEYS", "Artifacts",
    "artifact_dir_problem", "auc_table", "card_text", "check_artifact_dir", "curves_from_rows", "is_artifact_dir",
    "iter_curves", "load_artifacts", "package_versions", "save_artifacts", "save_explanations", "write_card",
]

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


# ----------------------------------------------------------------------------------------------
# Whole artifact folders: save (rows + curves + config + card + plots), check, load back.
# ----------------------------------------------------------------------------------------------

CARD_FILE = "README.md"
CURVES_FILE = "curves.json"
CONFIG_FILE = "config.json"
PLOTS_DIR = "plots"
PARTIAL_DIR = ".partial"
#: keys of one curves.json entry (``curves[method][curve]``); lists are over k = 0..N players.
CURVE_KEYS = ("accuracy", "confidence", "auc", "confidence_auc", "num_images")
#: config keys that may hold credentials; they are dropped before anything is written.
SECRET_KEYS = frozenset({"token", "hf_token", "auth_token", "access_token", "use_auth_token", "api_key"})
CARD_TAGS = ["explainability", "interpretability", "moxi", "shapley", "image-classification"]
_REQUIRED = (DATA_FILE, CONFIG_FILE, CARD_FILE)
_PAPER = "https://arxiv.org/abs/2401.03785"
_CODE = "https://github.com/KosukeSumiyasu/MoXI"
_CITATION = """@inproceedings{kosuke2024identifying,
  author    = {Kosuke Sumiyasu and Kazuhiko Kawamoto and Hiroshi Kera},
  title     = {Identifying Important Group of Pixels using Interactions},
  journal   = {Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}"""


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _scrub_secrets(value, secret: str | None):
    """Drop credential-like keys and any string containing the active HF token (recursively)."""
    if isinstance(value, dict):
        return {key: _scrub_secrets(item, secret) for key, item in value.items()
                if str(key).lower() not in SECRET_KEYS}
    if isinstance(value, (list, tuple)):
        return [_scrub_secrets(item, secret) for item in value]
    if isinstance(value, str) and secret and secret in value:
        return value.replace(secret, "***")
    return value


def _active_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no token source is fine here
        return None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results (for ``config.json``)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    versions = {"moxi-hf": __version__}
    for name in ("torch", "transformers", "datasets", "huggingface_hub"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def iter_curves(curves: dict):
    """Yield ``(method, curve, entry)`` from ``curves[method][curve]`` (also accepts flat ``"method/curve"`` keys)."""
    for key, value in (curves or {}).items():
        if not isinstance(value, dict):
            continue
        if any(name in value for name in CURVE_KEYS):
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
    from .errors import MoXIError

    problem = artifact_dir_problem(path)
    if problem:
        raise MoXIError(problem)
    return Path(path)


def _looks_like_repo_id(value) -> bool:
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
    return str(getattr(feature, "dtype", feature))


def _fmt(value) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def card_text(config: dict, curves: dict, num_rows: int, label_names: list[str] | None = None,
              plots: list[str] | None = None, license: str | None = None) -> str:
    """The dataset card (YAML front matter + Markdown body) of an artifact folder, as text."""
    from huggingface_hub import DatasetCardData

    model, dataset = config.get("model"), config.get("dataset")
    pretty = "MoXI explanations" + (f" of {Path(str(model)).name}" if model else "")
    extra = {}
    if _looks_like_repo_id(model):
        extra["base_model"] = model
    data = DatasetCardData(
        license=license or config.get("license") or "other",
        pretty_name=pretty,
        task_categories=["image-classification"],
        size_categories=[_size_category(num_rows)],
        source_datasets=[dataset] if _looks_like_repo_id(dataset) else None,
        tags=list(CARD_TAGS),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
        dataset_info={"features": row_features(label_names)._to_yaml_list()},
        **extra,
    )
    lines = [f"# {pretty}", ""]
    source = f" on `{dataset}`" + (f" ({config['split']} split)" if config.get("split") else "") if dataset else ""
    lines += [
        f"Per-image explanations of the image classifier `{model or 'unknown'}`{source}, made with "
        "moxi-hf: MoXI, *Identifying Important Group of Pixels using Interactions* (CVPR 2024, "
        f"[paper]({_PAPER}), [original code]({_CODE})), and baselines. Each row is one image explained by "
        "one method for one curve (insertion or deletion): the patch order (most important first), the "
        "\"patches needed\" heatmap, and the model's accuracy/confidence after k = 0..N patches were "
        "inserted or deleted.",
        "",
        "## Run settings",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key, value in config.items():
        if key in ("versions", "label_names") or value is None or value in ({}, [], ""):
            continue
        lines.append(f"| {key} | {_format_value(value)} |")
    if label_names:
        lines.append(f"| classes | {_format_value(list(label_names))} |")
    lines.append(f"| rows | {num_rows} |")
    versions = config.get("versions")
    if isinstance(versions, dict) and versions:
        lines += ["", "Packages: " + ", ".join(f"{name} {version}" for name, version in versions.items()) + "."]

    table = auc_table(curves)
    if table:
        order = [m for m in config.get("methods") or [] if m in table] + [m for m in table if m not in (config.get("methods") or [])]
        lines += [
            "",
            "## Results",
            "",
            "AUC = mean of the curve over k = 0..N patches. Insertion: higher is better (fewer patches "
            "restore the prediction); deletion: lower is better (fewer patches destroy it).",
            "",
            "| method | insertion AUC (accuracy) | deletion AUC (accuracy) | insertion AUC (confidence) "
            "| deletion AUC (confidence) | images |",
            "|---|---|---|---|---|---|",
        ]
        for method in order:
            ins, dele = table[method].get("insertion", {}), table[method].get("deletion", {})
            images = ins.get("num_images") if ins.get("num_images") is not None else dele.get("num_images")
            lines.append(f"| {method} | {_fmt(ins.get('auc'))} | {_fmt(dele.get('auc'))} | "
                         f"{_fmt(ins.get('confidence_auc'))} | {_fmt(dele.get('confidence_auc'))} | "
                         f"{images if images is not None else '–'} |")
    if plots:
        lines += ["", "## Plots", ""]
        for plot in plots:
            lines += [f"![{Path(plot).stem}]({plot})", ""]
    features = row_features(label_names)
    lines += [
        "",
        "## Files",
        "",
        f"- `{DATA_FILE}`: one row per (image, method, curve), columns below",
        f"- `{CURVES_FILE}`: per method × curve: mean accuracy/confidence at each k, their AUC, number of images",
        f"- `{CONFIG_FILE}`: the run settings and package versions",
        *([f"- `{PLOTS_DIR}/*.png`: the figures above"] if plots else []),
        "",
        "## Columns",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {_feature_type(features[name])} | {meaning} |" for name, meaning in ROW_COLUMNS.items()]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        "rows = load_dataset(\"USER/NAME\", split=\"train\")  # or the local folder",
        "",
        "from moxi_hf.artifacts import load_artifacts",
        "artifacts = load_artifacts(\"USER/NAME\")  # .rows, .curves, .config, .card",
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


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
        config = json.loads((output_dir / CONFIG_FILE).read_text()) if (output_dir / CONFIG_FILE).is_file() else {}
    if curves is None:
        curves = json.loads((output_dir / CURVES_FILE).read_text()) if (output_dir / CURVES_FILE).is_file() else {}
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
    text = card_text(_scrub_secrets(config, _active_token()), curves, num_rows, label_names, plots, license)
    card = DatasetCard(text)  # parses the YAML: a broken card fails here, not on the Hub
    path = output_dir / CARD_FILE
    _write_text_atomic(path, str(card))
    return path


def _save_plots(output_dir: Path, plots) -> None:
    """``plots``: {name: matplotlib Figure | PNG path | PNG bytes} or an iterable of PNG paths."""
    if plots is None:
        return
    items = plots.items() if isinstance(plots, dict) else ((Path(p).name, p) for p in plots)
    for name, plot in items:
        name = str(name) if str(name).endswith(".png") else f"{name}.png"
        target = output_dir / PLOTS_DIR / Path(name).name
        if hasattr(plot, "savefig"):
            import io

            buffer = io.BytesIO()
            plot.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            _write_bytes_atomic(target, buffer.getvalue())
        elif isinstance(plot, (bytes, bytearray)):
            _write_bytes_atomic(target, bytes(plot))
        elif Path(plot).resolve() != target.resolve():
            _write_bytes_atomic(target, Path(plot).read_bytes())


def save_artifacts(output_dir: str | os.PathLike, rows: list[dict], curves: dict, config: dict,
                   label_names: list[str] | None = None, plots=None, license: str | None = None) -> Path:
    """Write a complete artifact folder: rows (Parquet), curves.json, config.json, plots, then the card.

    ``curves``: ``{method: {curve: {"accuracy": [k=0..N], "confidence": [...], "auc", "confidence_auc",
    "num_images"}}}``. ``config``: the run settings (JSON-able); credential-like keys are dropped and
    package versions are added under ``"versions"``. ``plots``: ``{name: Figure | path | bytes}`` or
    PNG paths, written to ``plots/``. Every file is written atomically; the card comes last.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    secret = _active_token()
    config = _scrub_secrets(dict(config or {}), secret)
    if label_names is None:
        label_names = config.get("label_names")
    if label_names is not None:
        config["label_names"] = [str(name) for name in label_names]
    config.setdefault("versions", package_versions())
    write_rows(output_dir, rows, label_names)
    write_json(output_dir / CURVES_FILE, _scrub_secrets(curves or {}, secret))
    write_json(output_dir / CONFIG_FILE, config)
    _save_plots(output_dir, plots)
    write_card(output_dir, config, curves or {}, label_names, num_rows=len(rows), license=license)
    return output_dir


def curves_from_rows(rows: list[dict]) -> dict:
    """Aggregate per-image curves of rows into ``{method: {curve: CURVE_KEYS}}`` (rows without curves are skipped)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row.get("accuracy_curve") and row.get("confidence_curve"):
            groups.setdefault((row["method"], row["curve"]), []).append(row)
    curves: dict[str, dict] = {}
    for (method, curve), members in groups.items():
        length = min(len(row["accuracy_curve"]) for row in members)
        accuracy = [sum(row["accuracy_curve"][k] for row in members) / len(members) for k in range(length)]
        confidence = [sum(row["confidence_curve"][k] for row in members) / len(members) for k in range(length)]
        curves.setdefault(method, {})[curve] = {
            "accuracy": accuracy,
            "confidence": confidence,
            "auc": sum(accuracy) / len(accuracy),
            "confidence_auc": sum(confidence) / len(confidence),
            "num_images": len(members),
        }
    return curves


def save_explanations(output_dir: str | os.PathLike, explanations, model: str | None = None,
                      label_names: list[str] | None = None, dataset_indices: list[int] | None = None,
                      config: dict | None = None, plots=None) -> Path:
    """Write ``moxi explain`` results as an artifact folder (rows, curves.json, config.json, card).

    One row per Explanation via :func:`explanation_to_row`. ``dataset_indices`` (one per
    explanation) default to the position of the explanation's image among the distinct images.
    Curves are averaged from the explanations' own curves where every player was ordered.
    """
    explanations = list(explanations)
    if dataset_indices is None:
        seen: dict = {}
        dataset_indices = []
        for position, explanation in enumerate(explanations):
            key = explanation.image if explanation.image else ("#", position)
            dataset_indices.append(seen.setdefault(key, len(seen)))
    rows = [explanation_to_row(explanation, index) for explanation, index in zip(explanations, dataset_indices)]
    complete = [row for row in rows if len(row["accuracy_curve"]) == row["grid_rows"] * row["grid_cols"] + 1]
    first = explanations[0] if explanations else None
    settings = {
        "kind": "explain",
        "model": model or (first.model if first else None),
        "methods": list(dict.fromkeys(e.method for e in explanations)),
        "curves": list(dict.fromkeys(e.curve for e in explanations)),
        "num_images": len(set(dataset_indices)),
        "reward": first.reward if first else None,
        "masking": first.masking if first else None,
        "players_grid": list(first.grid) if first else None,
    }
    settings.update(config or {})
    return save_artifacts(output_dir, rows, curves_from_rows(complete), settings, label_names, plots)


@dataclass
class Artifacts:
    """An artifact folder loaded back: ``rows`` (datasets.Dataset), ``curves``, ``config``, ``card``, ``path``."""

    path: Path
    rows: Dataset
    curves: dict
    config: dict
    card: object | None = None
    plots: list[Path] = field(default_factory=list)

    @property
    def label_names(self) -> list[str] | None:
        feature = self.rows.features["label"]
        return list(feature.names) if isinstance(feature, ClassLabel) else self.config.get("label_names")

    def auc_table(self) -> dict[str, dict[str, dict]]:
        return auc_table(self.curves)


def load_artifacts(dir_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
                   endpoint: str | None = None, cache_dir: str | os.PathLike | None = None) -> Artifacts:
    """Load an artifact folder from a local path or a Hub dataset repo (``snapshot_download``).

    A repo id (``USER/NAME``) is downloaded with ``repo_type="dataset"`` at ``revision``, from
    ``endpoint`` (default ``HF_ENDPOINT`` / huggingface.co). Raises MoXIError when the folder or
    repo is not a complete artifact folder.
    """
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from .errors import MoXIError

    source = str(dir_or_repo_id)
    path = Path(source).expanduser()
    if not path.exists():
        if not _looks_like_repo_id(source):
            raise MoXIError(f"{source} is neither an existing folder nor a Hub dataset repo id (USER/NAME)")
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            path = Path(snapshot_download(source, repo_type="dataset", revision=revision, token=token,
                                          endpoint=endpoint, cache_dir=cache_dir))
        except HfHubHTTPError as error:
            status = getattr(getattr(error, "response", None), "status_code", "?")
            raise MoXIError(f"could not download dataset repo {source} (HTTP {status}): "
                            f"{str(error).strip().splitlines()[0]}") from error
    path = check_artifact_dir(path)
    rows = load_dataset("parquet", data_files=str(path / DATA_FILE), split="train")
    curves = json.loads((path / CURVES_FILE).read_text()) if (path / CURVES_FILE).is_file() else {}
    config = json.loads((path / CONFIG_FILE).read_text())
    card = DatasetCard.load(path / CARD_FILE)
    plots = sorted((path / PLOTS_DIR).glob("*.png"))
    return Artifacts(path=path, rows=rows, curves=curves, config=config, card=card, plots=plots)
