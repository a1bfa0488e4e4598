"""Insertion/deletion evaluation over a ``datasets`` split, under plain ``python`` or ``accelerate launch``.

The protocol (DESIGN.md §1): shuffle the split with ``seed``; keep the first ``num_images`` images
the model classifies correctly on the whole image (or the first ``per_class`` correct images of
every class); the true label is the target. For every method and curve compute the order of the
players, then the accuracy curve (is the label still/already predicted after k = 0..P players were
deleted/inserted, k = 0 measured) and the confidence curve p(label), averaged over the images;
AUC = the mean of a curve over k = 0..P.

Work is split into fixed chunks of ``batch_size`` consecutive selected images (their coalitions
share forward passes); the chunks, not the images, are shared between processes, so the numbers do
not depend on how many processes ran. Each finished image is written atomically to
``OUTPUT/.partial/images/`` (a hidden folder ``datasets.load_dataset(OUTPUT)`` ignores); a rerun of
the same configuration skips finished images, a different configuration is refused. The shuffle is
``Dataset.shuffle(seed)``'s permutation (a seeded buffer shuffle with ``streaming``); on CPU,
``MKL_CBWR=AUTO,STRICT`` is set (unless set already) so results are bit-identical whatever the
process count or resume point.

Output folder (layout of :mod:`moxi_hf.artifacts`): ``data/explanations.parquet``, ``curves.json``,
``config.json``, ``plots/curves.png``, ``plots/confidence.png``, ``plots/heatmaps.png``
(``plots/heatmaps_deletion.png`` too with both curves), ``README.md`` (the dataset card).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import artifacts
from .errors import MoXIError
from .explainer import Explainer
from .methods import METHODS, Attribution, get_method
from .methods.base import CURVES
from .metrics import measure_curves
from .removal import TokenRemoval

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_MODEL",
    "EvaluationConfig",
    "aggregate_curves",
    "default_model",
    "evaluate",
    "plot_curves",
    "plot_heatmaps",
    "select_images",
]

DEFAULT_DATASET = "ILSVRC/imagenet-1k"
#: The shipped checkpoint, used when no model is given (same default as ``moxi explain``).
DEFAULT_MODEL = str(Path(__file__).resolve().parent.parent / "models" / "moxi-vit-mnist")
DEFAULT_NUM_IMAGES = 100
PARTIAL_DIR = artifacts.PARTIAL_DIR  # ".partial": hidden, so load_dataset(OUTPUT) and `moxi push` skip it
SELECTION_FILE = "selection.json"
#: images per forward pass while selecting correctly classified images (fixed: selection runs on the main process)
SELECT_BATCH = 32
#: images shown in plots/heatmaps.png
HEATMAP_IMAGES = 6
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_VERSIONED = ("moxi-hf", "torch", "transformers", "datasets", "accelerate", "huggingface_hub", "numpy", "safetensors")


def default_model() -> str:
    """The default model: ``moxi_hf.defaults.default_model_path()`` (same as ``moxi explain``), else :data:`DEFAULT_MODEL`."""
    try:
        from .defaults import default_model_path
    except ImportError:
        return DEFAULT_MODEL
    return os.fspath(default_model_path())


@dataclass
class EvaluationConfig:
    """Everything one evaluation run needs. ``None`` fields get their documented default."""

    output_dir: str
    model: str | None = None  # default: :func:`default_model`
    dataset: str = DEFAULT_DATASET  # Hub dataset id or a local folder (imagefolder)
    split: str | None = None  # default: validation (a local folder with one split: that split)
    streaming: bool = False
    shuffle_buffer: int = 1000  # streaming only: size of the shuffle buffer
    image_column: str = "image"
    label_column: str = "label"
    methods: Sequence[str] | None = None  # default: every method the model supports
    curves: Sequence[str] = CURVES
    num_images: int | None = None  # default 100 (without per_class)
    per_class: int | None = None  # first K correct images of every class
    seed: int = 0
    num_samples: int = 200  # full-shapley samples per player
    masking: str = "auto"
    reward: str = "log-odds"
    players_grid: int | tuple[int, int] | None = None
    dtype: str = "float32"
    device: str | None = None  # None/"auto": the process's accelerator (Accelerate), "cpu" forces CPU
    batch_size: int = 8  # images explained together
    overwrite: bool = False
    quiet: bool = False
    push_to_hub: str | None = None  # dataset repo (USER/NAME) to upload the finished folder to
    hub_private: bool = False  # create that repo as private

    def validate(self) -> None:
        if self.num_images is not None and self.per_class is not None:
            raise MoXIError("give either --num-images or --per-class, not both")
        for name in ("num_images", "per_class", "batch_size", "num_samples", "shuffle_buffer"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise MoXIError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for curve in self.curves:
            if curve not in CURVES:
                raise MoXIError(f"unknown curve {curve!r}; choose insertion and/or deletion")
        if not self.curves or len(set(self.curves)) != len(self.curves):
            raise MoXIError("curves must be a non-empty list without repeats")
        if self.methods is not None:
            for method in self.methods:
                if method not in METHODS:
                    raise MoXIError(f"unknown method {method!r}; choose among {', '.join(METHODS)}")
            if not self.methods or len(set(self.methods)) != len(self.methods):
                raise MoXIError("methods must be a non-empty list without repeats")


# -- small helpers ------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file + ``os.replace`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def package_versions() -> dict[str, str]:
    from . import __version__

    versions = {"python": platform.python_version(), "moxi-hf": __version__}
    for name in _VERSIONED[1:]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _is_local(path: str) -> bool:
    return os.path.isdir(os.path.expanduser(path))


def _resolve_model(model: str | None) -> str:
    if model is None:
        model = default_model()
        if not _is_local(model):
            raise MoXIError(f"the default model folder {model!r} is missing; pass --model")
    if _is_local(model):
        return os.path.abspath(os.path.expanduser(model))
    return model


# -- data ---------------------------------------------------------------------------------------


@dataclass
class DataSource:
    """The opened split: the dataset (image column not decoded), its label names and number of classes."""

    dataset: object  # datasets.Dataset or IterableDataset
    split: str
    label_names: list[str] | None
    num_classes: int | None
    local_root: str | None
    decoder: object | None  # datasets.Image() used to decode undecoded image values

    def decode(self, value):
        """A PIL image from a dataset value (undecoded {'bytes','path'} dict, PIL image or array)."""
        if self.decoder is not None and isinstance(value, dict):
            return self.decoder.decode_example(value)
        return value

    def identifier(self, value) -> str | None:
        """The image's file name (relative to a local dataset folder), when known."""
        path = value.get("path") if isinstance(value, dict) else getattr(value, "filename", None)
        if not path:
            return None
        if self.local_root is None:
            return os.path.basename(path)
        try:
            return os.path.relpath(path, self.local_root)
        except ValueError:
            return os.path.basename(path)


def _has_images(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(name.lower().endswith(_IMAGE_SUFFIXES) for name in files):
            return True
    return False


def open_dataset(config: EvaluationConfig) -> DataSource:
    """Load the split (Hub id or local folder) and check its columns; images stay undecoded until used."""
    import datasets

    name = config.dataset
    local = _is_local(name)
    try:
        if local:
            root = os.path.abspath(os.path.expanduser(name))
            if _has_images(root):
                loaded = datasets.load_dataset("imagefolder", data_dir=root, streaming=config.streaming)
            else:
                loaded = datasets.load_dataset(root, streaming=config.streaming)
        else:
            root = None
            loaded = datasets.load_dataset(name, split=config.split or "validation", streaming=config.streaming)
    except Exception as error:  # noqa: BLE001 - datasets raises many kinds here
        hint = "" if local else (
            "; gated datasets (ImageNet) need `hf auth login` or HF_TOKEN and accepting their terms on the Hub"
        )
        raise MoXIError(f"could not load dataset {name!r}: {str(error).splitlines()[0] if str(error) else error}{hint}") from None
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = list(loaded)
        split = config.split or ("validation" if "validation" in splits or len(splits) != 1 else splits[0])
        if split not in splits:
            raise MoXIError(f"dataset {name!r} has no split {split!r}; it has {', '.join(splits)} (use --split)")
        dataset = loaded[split]
    else:
        split, dataset = config.split or "validation", loaded
    features = dataset.features
    columns = list(features) if features is not None else None
    for column, flag in ((config.image_column, "--image-column"), (config.label_column, "--label-column")):
        if columns is not None and column not in columns:
            raise MoXIError(f"dataset {name!r} has no column {column!r} (columns: {', '.join(columns)}); use {flag}")
    decoder = None
    if features is not None and isinstance(features.get(config.image_column), datasets.Image):
        decoder = datasets.Image()
        dataset = dataset.cast_column(config.image_column, datasets.Image(decode=False))
    label_feature = features.get(config.label_column) if features is not None else None
    label_names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
    keep = [config.image_column, config.label_column]
    if columns is not None and set(columns) != set(keep):
        dataset = dataset.select_columns(keep)
    return DataSource(dataset, split, label_names, len(label_names) if label_names else None, root, decoder)


def _shuffled_examples(source: DataSource, config: EvaluationConfig) -> Iterator[tuple[int, dict]]:
    """(dataset index, example) in the seeded shuffled order (a seeded buffer shuffle when streaming)."""
    dataset = source.dataset
    if not config.streaming:
        permutation = np.random.default_rng(config.seed).permutation(len(dataset))
        for start in range(0, len(permutation), SELECT_BATCH):
            indices = [int(i) for i in permutation[start : start + SELECT_BATCH]]
            batch = dataset[indices]
            for position, index in enumerate(indices):
                yield index, {key: values[position] for key, values in batch.items()}
        return
    rng = np.random.default_rng(config.seed)
    buffer: list[tuple[int, dict]] = []
    for item in enumerate(dataset):
        if len(buffer) < config.shuffle_buffer:
            buffer.append(item)
            continue
        slot = int(rng.integers(len(buffer)))
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def _fetch_examples(source: DataSource, indices: Sequence[int]) -> dict[int, dict]:
    """The examples at these dataset indices (random access, or one pass over the stream)."""
    wanted = set(int(i) for i in indices)
    if not wanted:
        return {}
    if hasattr(source.dataset, "__len__"):
        ordered = sorted(wanted)
        batch = source.dataset[ordered]
        return {index: {key: values[n] for key, values in batch.items()} for n, index in enumerate(ordered)}
    found: dict[int, dict] = {}
    last = max(wanted)
    for index, example in enumerate(source.dataset):
        if index in wanted:
            found[index] = example
        if index >= last:
            break
    missing = wanted - set(found)
    if missing:
        raise MoXIError(f"the streamed split ended before image {min(missing)}")
    return found


def _check_label(label, num_labels: int, index: int) -> int:
    if label is None or isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise MoXIError(f"image {index} has label {label!r}; the label column must hold class indices")
    label = int(label)
    if not 0 <= label < num_labels:
        if label < 0:
            raise MoXIError(f"image {index} has label {label}: this split has no labels (use a labelled split)")
        raise MoXIError(f"image {index} has label {label} but the model has {num_labels} classes (0..{num_labels - 1})")
    return label


# -- selection ----------------------------------------------------------------------------------


def select_images(explainer: Explainer, source: DataSource, config: EvaluationConfig, progress: bool = False) -> dict:
    """The first correctly classified images in the seeded shuffled order.

    Returns ``{"images": [{"dataset_index", "label"}, ...] (selection order), "scanned": int,
    "correct": int, "per_class_counts": {label: count} (per_class only)}``.
    """
    per_class = config.per_class
    wanted = None if per_class else (config.num_images or DEFAULT_NUM_IMAGES)
    num_classes = source.num_classes or explainer.num_labels
    counts: dict[int, int] = {}
    chosen: list[dict] = []
    scanned = correct = 0
    bar = tqdm(desc="selecting", unit="image", disable=not progress, leave=False)

    def done() -> bool:
        if wanted is not None:
            return len(chosen) >= wanted
        return len(counts) >= num_classes and all(count >= per_class for count in counts.values())

    pending: list[tuple[int, dict]] = []

    def flush() -> None:
        nonlocal scanned, correct
        images = [source.decode(example[config.image_column]) for _, example in pending]
        labels = [_check_label(example[config.label_column], explainer.num_labels, index) for index, example in pending]
        pixel_values, _ = explainer.preprocess(images)
        with torch.no_grad():
            predicted = explainer.predict(pixel_values).tolist()
        for (index, _), label, guess in zip(pending, labels, predicted):
            if done():
                break
            scanned += 1
            if guess != label:
                continue
            correct += 1
            if per_class and counts.get(label, 0) >= per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            chosen.append({"dataset_index": int(index), "label": label})
        bar.update(len(pending))
        bar.set_postfix(selected=len(chosen))
        pending.clear()

    for item in _shuffled_examples(source, config):
        pending.append(item)
        if len(pending) == SELECT_BATCH:
            flush()
            if done():
                break
    if pending and not done():
        flush()
    bar.close()
    if not chosen:
        raise MoXIError(f"the model classifies none of the {scanned} images of the split correctly; nothing to evaluate")
    selection = {"images": chosen, "scanned": scanned, "correct": correct}
    if per_class:
        selection["per_class_counts"] = {str(label): counts[label] for label in sorted(counts)}
        short = [label for label in range(num_classes) if counts.get(label, 0) < per_class]
        if short and progress:
            print(f"moxi evaluate: {len(short)} of {num_classes} classes have fewer than {per_class} correctly "
                  f"classified images in the split (e.g. class {short[0]})", file=sys.stderr)
    elif len(chosen) < wanted and progress:
        print(f"moxi evaluate: only {len(chosen)} of the {scanned} images are classified correctly "
              f"(asked for {wanted}); evaluating those", file=sys.stderr)
    return selection


# -- explaining ---------------------------------------------------------------------------------


def _method_options(name: str, config: EvaluationConfig) -> dict:
    if name == "full-shapley":
        return {"num_samples": config.num_samples, "seed": config.seed}
    return {}


def explain_chunk(explainer: Explainer, images: list, labels: list[int], indices: list[int],
                  names: list[str | None], methods: Sequence[str], curves: Sequence[str],
                  config: EvaluationConfig) -> list[list[dict]]:
    """Rows (methods × curves, in that order) for each image of one chunk; all images share forward passes.

    Curve-independent methods (``depends_on_curve`` False) compute their order once and reuse it
    for every curve. Every curve is then measured with :func:`moxi_hf.metrics.measure_curves` on
    the final orders (k = 0..P, k = 0 included), all methods of a curve in one call; curves a
    method measured on its way (MoXI) are not used, so every method is measured the same way.
    """
    pixel_values, pil_images = explainer.preprocess(images)
    with torch.no_grad():
        predicted = explainer.predict(pixel_values)
    game = explainer.value_function(pixel_values, labels)
    method_objects = {name: get_method(name, **_method_options(name, config)) for name in methods}
    attributions: dict[tuple[str, str], Attribution] = {}
    for name, method in method_objects.items():
        shared = None
        for curve in curves:
            if method.depends_on_curve or shared is None:
                with torch.no_grad():  # Grad-CAM enables gradients where it needs them
                    shared = method.attribute(game, curve)
                if shared.lengths is not None:
                    raise MoXIError(f"{name} stopped early; curves need the order of every player")
            attributions[(name, curve)] = shared
    count = len(images)
    rows: list[list[dict]] = [[] for _ in images]
    measured: dict[tuple[str, str], Attribution] = {}
    for curve in curves:
        # One game holding every method's copy of the images: one pass per k for all methods.
        stacked = explainer.value_function(pixel_values.repeat(len(methods), 1, 1, 1), list(labels) * len(methods))
        orders = torch.cat([attributions[(name, curve)].order for name in methods])
        with torch.no_grad():
            curve_output = measure_curves(stacked, orders, curve)
        for number, name in enumerate(methods):
            part = slice(number * count, (number + 1) * count)
            attribution = attributions[(name, curve)]
            measured[(name, curve)] = Attribution(attribution.order, attribution.scores,
                                                  curve_output.probabilities[part], curve_output.predictions[part])
    for name in methods:
        for curve in curves:
            explanations = explainer._explanations(game, measured[(name, curve)], method_objects[name], curve,
                                                   predicted, names, pil_images)
            for position, explanation in enumerate(explanations):
                rows[position].append(artifacts.explanation_to_row(explanation, dataset_index=indices[position]))
    return rows


# -- aggregation and plots ----------------------------------------------------------------------


def aggregate_curves(rows: Sequence[dict], methods: Sequence[str], curves: Sequence[str]) -> dict:
    """Mean accuracy/confidence curves per method × curve over the images, with AUC (mean over k = 0..P).

    Returns ``{method: {curve: {"accuracy": [P + 1], "confidence": [P + 1], "auc" (of the accuracy
    curve), "confidence_auc", "num_images", "num_players"}}}`` (the curves.json layout of
    :mod:`moxi_hf.artifacts`).
    """
    result: dict[str, dict] = {}
    for method in methods:
        result[method] = {}
        for curve in curves:
            chosen = [row for row in rows if row["method"] == method and row["curve"] == curve]
            if not chosen:
                continue
            accuracy = np.asarray([row["accuracy_curve"] for row in chosen], dtype=np.float64).mean(axis=0)
            confidence = np.asarray([row["confidence_curve"] for row in chosen], dtype=np.float64).mean(axis=0)
            result[method][curve] = {
                "accuracy": [float(value) for value in accuracy],
                "confidence": [float(value) for value in confidence],
                "auc": float(accuracy.mean()),
                "confidence_auc": float(confidence.mean()),
                "num_images": len(chosen),
                "num_players": len(accuracy) - 1,
            }
    return result


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict, path: str | os.PathLike, metric: str = "accuracy", title: str | None = None) -> Path:
    """Insertion and deletion panels, x = fraction of players, one line per method (as in the paper's figures)."""
    plt = _pyplot()
    names = [curve for curve in CURVES if any(curve in by_curve for by_curve in curves.values())]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, curve in zip(axes[0], names):
        for method, by_curve in curves.items():
            if curve not in by_curve:
                continue
            entry = by_curve[curve]
            values = np.asarray(entry[metric])
            x = np.arange(len(values)) / max(entry["num_players"], 1)
            auc_value = entry["auc" if metric == "accuracy" else f"{metric}_auc"]
            ax.plot(x, values, label=f"{method} (AUC {auc_value:.3f})", linewidth=1.6)
        ax.set_title(f"{curve} ({'players inserted' if curve == 'insertion' else 'players deleted'})")
        ax.set_xlabel(f"fraction of players {'inserted' if curve == 'insertion' else 'deleted'}")
        ax.set_ylabel("accuracy" if metric == "accuracy" else "mean p(label)")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _display_image(pixel_values: torch.Tensor, processor) -> np.ndarray:
    """The model's view of an image (C, H, W) normalised -> (H, W, 3) in [0, 1]."""
    image = pixel_values.float().cpu()
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is not None and std is not None and len(mean) == image.shape[0] == len(std):
        image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
    image = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def plot_heatmaps(pictures: list[np.ndarray], rows: Sequence[dict], methods: Sequence[str], curve: str,
                  path: str | os.PathLike, label_names: list[str] | None = None) -> Path:
    """A grid: one row per image (model view + one heatmap per method for ``curve``)."""
    plt = _pyplot()
    by_key = {(row["dataset_index"], row["method"], row["curve"]): row for row in rows}
    indices = list(dict.fromkeys(row["dataset_index"] for row in rows))[: len(pictures)]
    figure, axes = plt.subplots(len(indices), len(methods) + 1, figsize=(1.9 * (len(methods) + 1), 2.0 * len(indices)),
                                squeeze=False)
    for r, (index, picture) in enumerate(zip(indices, pictures)):
        height, width = picture.shape[:2]
        for c in range(len(methods) + 1):
            ax = axes[r][c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                first = by_key.get((index, methods[0], curve))
                label = first["label"] if first else "?"
                name = label_names[label] if label_names and isinstance(label, int) and label < len(label_names) else label
                ax.set_title(f"#{index} label {name}", fontsize=8)
                continue
            row = by_key.get((index, methods[c - 1], curve))
            if row is None:
                continue
            heat = np.asarray(row["heatmap"], dtype=np.float32).reshape(row["grid_rows"], row["grid_cols"])
            # players not needed stay transparent; the extent matches the picture's pixel edges
            ax.imshow(np.ma.masked_equal(heat, 0.0), cmap="jet", alpha=0.55, interpolation="nearest",
                      extent=(-0.5, width - 0.5, height - 0.5, -0.5), vmin=0, vmax=max(float(heat.max()), 1.0))
            if r == 0:
                ax.set_title(f"{methods[c - 1]}\n{row['patches_needed']} needed", fontsize=8)
            else:
                ax.set_title(f"{row['patches_needed']} needed", fontsize=8)
    figure.suptitle(f"{curve}: players needed (heat = earlier in the order)", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# -- output folder ------------------------------------------------------------------------------


_OWNED = ("data", "plots", PARTIAL_DIR, "curves.json", "config.json", "README.md")


def _settings_diff(old: dict, new: dict) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def check_output_dir(output_dir: Path, settings: dict) -> None:
    """Refuse an output folder that holds another run (or other files); a folder of this run is fine."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise MoXIError(f"output dir {str(output_dir)!r} is a file")
    config_path = output_dir / "config.json"
    if config_path.is_file():
        try:
            previous = json.loads(config_path.read_text())
        except json.JSONDecodeError:
            previous = None
        if not isinstance(previous, dict) or previous.get("kind") != "evaluate":
            raise MoXIError(f"{str(output_dir)!r} holds a config.json that is not from moxi evaluate; "
                            "use another --output-dir or --overwrite")
        differs = _settings_diff({key: previous.get(key) for key in settings}, settings)
        if differs:
            raise MoXIError(
                f"output dir {str(output_dir)!r} holds results of a different configuration (differs in: "
                f"{', '.join(differs)}); rerun with the same options to resume, or use another --output-dir or --overwrite"
            )
        return
    if any(output_dir.iterdir()):
        raise MoXIError(f"output dir {str(output_dir)!r} is not empty and holds no moxi evaluation; "
                        "use another --output-dir or --overwrite")


def _clear_output_dir(output_dir: Path) -> None:
    """--overwrite: remove what an evaluation writes (never other files)."""
    for name in _OWNED:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _image_file(output_dir: Path, position: int) -> Path:
    return output_dir / PARTIAL_DIR / "images" / f"{position:06d}.json"


def _read_image_result(output_dir: Path, position: int, expected: dict, n_rows: int) -> dict | None:
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


def _count_finished(output_dir: Path) -> int:
    folder = output_dir / PARTIAL_DIR / "images"
    return sum(1 for name in os.listdir(folder) if name.endswith(".json") and not name.startswith(".")) if folder.is_dir() else 0


# -- the run ------------------------------------------------------------------------------------


def _partial_state(device: str | None):
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _resolve_device(state, device: str | None) -> torch.device:
    if device in (None, "auto"):
        return state.device
    requested = torch.device(device)
    if requested.type == state.device.type and state.num_processes > 1:
        return state.device  # one accelerator per process
    return requested


def _methods_for(explainer: Explainer, methods: Sequence[str] | None) -> list[str]:
    if methods is not None:
        if "attention-rollout" in methods and not isinstance(explainer.adapter, TokenRemoval):
            raise MoXIError("attention-rollout needs a ViT/DeiT model (token masking); drop it from --methods")
        return list(methods)
    names = list(METHODS)
    if not isinstance(explainer.adapter, TokenRemoval):
        names.remove("attention-rollout")
    return names


def evaluate(config: EvaluationConfig) -> dict:
    """Run the evaluation (every process of an ``accelerate launch`` calls this); returns the curves dict.

    The main process writes the output folder; the others return the same curves dict.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    config.validate()
    # MKL picks alignment-dependent kernels unless told not to: bit-identical CPU results whatever
    # the process count or resume point need this (set before the first matrix product to count).
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    state = _partial_state(config.device)
    main = state.is_main_process
    output_dir = Path(config.output_dir).expanduser().resolve()
    model = _resolve_model(config.model)
    device = _resolve_device(state, config.device)
    explainer = Explainer.from_pretrained(model, masking=config.masking, reward=config.reward,
                                          players_grid=config.players_grid, dtype=config.dtype, device=device)
    source = open_dataset(config)
    methods = _methods_for(explainer, config.methods)
    curves = list(config.curves)
    settings = {
        "model": model,
        "dataset": os.path.abspath(os.path.expanduser(config.dataset)) if _is_local(config.dataset) else config.dataset,
        "split": source.split,
        "streaming": bool(config.streaming),
        "shuffle_buffer": config.shuffle_buffer if config.streaming else None,
        "image_column": config.image_column,
        "label_column": config.label_column,
        "methods": methods,
        "curves": curves,
        "num_images": None if config.per_class else (config.num_images or DEFAULT_NUM_IMAGES),
        "per_class": config.per_class,
        "seed": config.seed,
        "method_options": {name: _method_options(name, config) for name in methods if _method_options(name, config)},
        "masking": explainer.adapter.masking,
        "reward": explainer.reward,
        "players_grid": list(explainer.players.grid),
        "dtype": str(next(explainer.model.parameters()).dtype).replace("torch.", ""),
        "device": device.type,
        "batch_size": config.batch_size,
    }
    if config.overwrite:
        if main:
            _clear_output_dir(output_dir)
    else:
        check_output_dir(output_dir, settings)
    state.wait_for_everyone()
    record = {"kind": "evaluate", **settings, "versions": package_versions()}
    if main:
        artifacts.write_json(output_dir / "config.json", record)

    # Selection: on the main process (or from a previous run), the same for every process.
    partial = output_dir / PARTIAL_DIR
    plan: list = [None, None]
    if main:
        for stale in (partial / "images").glob(".*.tmp"):  # left by a run killed while writing
            stale.unlink(missing_ok=True)
        selection_path = partial / SELECTION_FILE
        selection = json.loads(selection_path.read_text()) if selection_path.is_file() else None
        if selection is None:
            selection = select_images(explainer, source, config, progress=not config.quiet)
            _atomic_write_text(selection_path, json.dumps(selection) + "\n")
        n_rows = len(methods) * len(curves)
        images = selection["images"]
        chunks = [list(range(start, min(start + config.batch_size, len(images))))
                  for start in range(0, len(images), config.batch_size)]
        pending = [chunk for chunk in chunks
                   if any(_read_image_result(output_dir, p, images[p], n_rows) is None for p in chunk)]
        plan = [selection, pending]
    broadcast_object_list(plan)
    selection, pending = plan
    images = selection["images"]
    total = len(images)

    bar = tqdm(total=total, initial=total - sum(len(chunk) for chunk in pending), desc="evaluate", unit="image",
               disable=not main or config.quiet, dynamic_ncols=True)
    finished: list[dict] = []
    with state.split_between_processes(pending) as mine:
        examples = _fetch_examples(source, [images[p]["dataset_index"] for chunk in mine for p in chunk])
        for chunk in mine:
            chosen = [images[p] for p in chunk]
            values = [examples[item["dataset_index"]][config.image_column] for item in chosen]
            rows = explain_chunk(
                explainer, [source.decode(value) for value in values], [item["label"] for item in chosen],
                [item["dataset_index"] for item in chosen], [source.identifier(value) for value in values],
                methods, curves, config,
            )
            for position, item, image_rows in zip(chunk, chosen, rows):
                result = {"position": position, **item, "rows": image_rows}
                _write_image_result(output_dir, position, result)
                finished.append(result)
            if main:
                bar.update(max(0, _count_finished(output_dir) - bar.n))
    gathered = gather_object(finished)
    bar.update(total - bar.n)
    bar.close()

    n_rows = len(methods) * len(curves)
    by_position = {result["position"]: result for result in gathered}
    summary: list = [None]
    if main:
        results = []
        for position, item in enumerate(images):
            result = by_position.get(position) or _read_image_result(output_dir, position, item, n_rows)
            if result is None:
                raise MoXIError(f"the result of image {position} (dataset index {item['dataset_index']}) is missing")
            results.append(result)
        all_rows = [row for result in results for row in result["rows"]]
        summary[0] = _write_outputs(output_dir, explainer, source, config, record, selection, all_rows, methods, curves)
    broadcast_object_list(summary)
    return summary[0]


def _write_image_result(output_dir: Path, position: int, result: dict) -> None:
    _atomic_write_text(_image_file(output_dir, position), json.dumps(result, separators=(",", ":")) + "\n")


def _write_outputs(output_dir: Path, explainer: Explainer, source: DataSource, config: EvaluationConfig,
                   record: dict, selection: dict, rows: list[dict], methods: list[str], curves: list[str]) -> dict:
    label_names = source.label_names
    if label_names is None:
        id2label = getattr(explainer.model.config, "id2label", None) or {}
        names = [id2label.get(i, id2label.get(str(i))) for i in range(explainer.num_labels)]
        label_names = [str(name) for name in names] if all(name is not None for name in names) else None
    artifacts.write_rows(output_dir, rows, label_names)
    summary = aggregate_curves(rows, methods, curves)
    artifacts.write_json(output_dir / "curves.json", summary)
    model_name = os.path.basename(str(record["model"]).rstrip("/")) or str(record["model"])
    n_images = len(selection["images"])
    title = f"{model_name} on {os.path.basename(config.dataset.rstrip('/'))} ({source.split}), {n_images} images"
    plot_curves(summary, output_dir / "plots" / "curves.png", "accuracy", title)
    plot_curves(summary, output_dir / "plots" / "confidence.png", "confidence", title)
    shown = selection["images"][:HEATMAP_IMAGES]
    examples = _fetch_examples(source, [item["dataset_index"] for item in shown])
    pixel_values, _ = explainer.preprocess([source.decode(examples[item["dataset_index"]][config.image_column])
                                            for item in shown])
    pictures = [_display_image(values, explainer.processor) for values in pixel_values]
    for curve in curves:
        name = "heatmaps.png" if curve == curves[0] else f"heatmaps_{curve}.png"
        plot_heatmaps(pictures, rows, methods, curve, output_dir / "plots" / name, label_names)
    selection_summary = {key: value for key, value in selection.items() if key != "images"}
    selection_summary["num_images"] = n_images
    final = {**record, "selection": selection_summary}
    if label_names is not None:
        final["label_names"] = list(label_names)
    artifacts.write_json(output_dir / "config.json", final)
    artifacts.write_card(output_dir)
    if config.push_to_hub:
        from .hub import push_artifacts

        url = push_artifacts(output_dir, config.push_to_hub, private=config.hub_private)
        if not config.quiet:
            print(f"pushed to {url}", file=sys.stderr)
    return summary


def format_summary(curves: dict) -> str:
    """A plain-text AUC table: method, curve, accuracy AUC, confidence AUC, images."""
    lines = [f"{'method':<20}{'curve':<11}{'acc AUC':>9}{'p(y) AUC':>10}{'images':>8}"]
    for method, by_curve in curves.items():
        for curve, entry in by_curve.items():
            lines.append(f"{method:<20}{curve:<11}{entry['auc']:>9.3f}{entry['confidence_auc']:>10.3f}"
                         f"{entry['num_images']:>8}")
    return "\n".join(lines)
