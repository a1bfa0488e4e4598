"""The evaluated split: opening a ``datasets`` split (Hub id or local folder), its seeded order, random access."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MoXIError
from ..images import IMAGE_SUFFIXES, decode_image
from ..value import check_label as check_class
from .config import EvaluationConfig

__all__ = [
    "SELECT_BATCH",
    "DataSource",
    "check_label",
    "fetch_examples",
    "is_local",
    "match_labels",
    "open_dataset",
    "shuffled_examples",
    "zero_shot_explainer",
]

#: images per forward pass while selecting correctly classified images (fixed: selection runs on the main process)
SELECT_BATCH = 32


def is_local(path: str) -> bool:
    return os.path.isdir(os.path.expanduser(path))


@dataclass
class DataSource:
    """The opened split: the dataset (image column not decoded), its label names and number of classes.

    ``label_map``: the dataset's class index -> the model's label, when :meth:`match_model` matched
    them by name (None: the same index).
    """

    dataset: object  # datasets.Dataset or IterableDataset
    split: str
    label_names: list[str] | None
    num_classes: int | None
    local_root: str | None
    decoder: object | None  # datasets.Image() used to decode undecoded image values
    label_map: dict[int, int] | None = None

    def decode(self, value):
        """A PIL image from a dataset value (undecoded {'bytes','path'} dict, PIL image or array).

        Bytes and local files go through :func:`moxi_hf.images.decode_image` (a damaged file or a
        decompression bomb is named by :meth:`identifier`); anything else through ``datasets``.
        """
        if self.decoder is not None and isinstance(value, dict):
            if value.get("bytes"):
                return decode_image(io.BytesIO(value["bytes"]), self.identifier(value) or "the dataset's image")
            if value.get("path") and os.path.isfile(value["path"]):
                return decode_image(Path(value["path"]), self.identifier(value))
            return self.decoder.decode_example(value)
        return value

    def identifier(self, value) -> str | None:
        """How the rows name an image: its path relative to the local dataset folder when it lies inside it,
        else its file name; never an absolute path, never one that climbs out with ``..``."""
        path = value.get("path") if isinstance(value, dict) else getattr(value, "filename", None)
        if not path:
            return None
        if self.local_root is not None:
            root = os.path.realpath(self.local_root)
            where = os.path.realpath(path)  # a relative path is opened from the working directory, as here
            try:
                inside = where != root and os.path.commonpath([where, root]) == root
            except ValueError:  # another drive
                inside = False
            if inside:
                return Path(os.path.relpath(where, root)).as_posix()
        return os.path.basename(path)

    def match_model(self, model_names: Sequence[str], quiet: bool = False) -> None:
        """Match the dataset's class names to the model's labels (:func:`match_labels`); by name, the rows then
        carry the model's labels and names. Raises :class:`MoXIError` when they match neither by name nor by count."""
        if self.label_names is None:
            return
        mapping = match_labels(self.label_names, model_names)
        if mapping is not None and any(index != label for index, label in mapping.items()):
            self.label_map, self.label_names = mapping, [str(name) for name in model_names]
        elif mapping is None and not quiet:
            print(f"moxi evaluate: the dataset's class names ({_some(self.label_names)}) are not the model's labels "
                  f"({_some(model_names)}); matching them by position, as both have {len(model_names)}",
                  file=sys.stderr)

    def model_label(self, label, num_labels: int, index: int) -> int:
        """The model's label of dataset ``label`` of image ``index`` (checked by :func:`check_label`)."""
        if self.label_map is not None and isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            label = self.label_map.get(int(label), label)
        return check_label(label, num_labels, index)

    @property
    def class_labels(self) -> list[int] | None:
        """The model's labels of the dataset's classes (None when the dataset names none)."""
        if self.num_classes is None:
            return None
        return [self.label_map[n] for n in range(self.num_classes)] if self.label_map else list(range(self.num_classes))


#: class names shown per set in a label-matching message
SHOWN_NAMES = 12


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(str(name) for name in names[:SHOWN_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > SHOWN_NAMES else "")


def match_labels(dataset_names: Sequence[str], model_names: Sequence[str | None]) -> dict[int, int] | None:
    """The dataset's class index -> the model's label, by name: the same name, else the same name ignoring
    case, else the name read as the label's number. None when they match not by name but are as many (then
    by position). Raises :class:`MoXIError` when neither.
    """
    model = [None if name is None else str(name) for name in model_names]
    folded: dict[str, list[int]] = {}
    for label, name in enumerate(model):
        if name is not None:
            folded.setdefault(name.casefold(), []).append(label)

    def by_name(name: str) -> int | None:
        if model.count(name) == 1:
            return model.index(name)
        if len(folded.get(name.casefold(), [])) == 1:
            return folded[name.casefold()][0]
        text = name.strip()
        return int(text) if text.isdigit() and int(text) < len(model) else None

    mapping = {index: by_name(str(name)) for index, name in enumerate(dataset_names)}
    if None not in mapping.values() and len(set(mapping.values())) == len(mapping):
        return mapping
    if len(dataset_names) == len(model):
        return None
    shown = [name if name is not None else str(label) for label, name in enumerate(model)]
    raise MoXIError(f"the dataset's {len(dataset_names)} classes ({_some(list(dataset_names))}) match the model's "
                    f"{len(model)} labels ({_some(shown)}) neither by name nor by count; evaluate a dataset of this "
                    "model's classes (class folders named like its labels)")


def zero_shot_explainer(explainer, source: DataSource, given: bool):
    """The zero-shot explainer an evaluation of ``source`` uses: its labels as given (``given``), else the model's
    recorded labels when they are as many as the dataset's classes (matched by index, or by name where the names
    agree), else the dataset's class names in the explainer's template."""
    labels = explainer.candidate_labels
    if given or (labels and (source.num_classes is None or len(labels) == source.num_classes)):
        return explainer.labelled()
    if not source.label_names:
        raise MoXIError("the dataset names no classes (its label column is not a ClassLabel) and the model records no "
                        "candidate labels as many as them: give the candidate labels (--labels), one per class index")
    return explainer.with_candidate_labels([str(name) for name in source.label_names])


def _has_images(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(name.lower().endswith(IMAGE_SUFFIXES) for name in files):
            return True
    return False


def open_dataset(config: EvaluationConfig) -> DataSource:
    """Load the split (Hub id or local folder) and check its columns; images stay undecoded until used."""
    import datasets

    from ..sources import resolve_dataset_source

    name = resolve_dataset_source(config.dataset)  # a mistyped local folder fails here, before any loading
    local = is_local(name)
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


def shuffled_examples(source: DataSource, config: EvaluationConfig) -> Iterator[tuple[int, dict]]:
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


def fetch_examples(source: DataSource, indices: Sequence[int]) -> dict[int, dict]:
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


def check_label(label, num_labels: int, index: int) -> int:
    """The label of the dataset's image ``index`` as a class of the model (:func:`moxi_hf.value.check_label`)."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label < 0:
        raise MoXIError(f"image {index} has label {label}: this split has no labels (use a labelled split)")
    try:
        return check_class(label, num_labels)
    except MoXIError as error:
        raise MoXIError(f"image {index}: {error}; the label column must hold the model's class indices") from None
