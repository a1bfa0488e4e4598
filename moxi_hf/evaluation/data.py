"""The evaluated split: opening a ``datasets`` split (Hub id or local folder), its seeded order, random access."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MoXIError
from ..images import IMAGE_SUFFIXES
from .config import EvaluationConfig

__all__ = [
    "SELECT_BATCH",
    "DataSource",
    "check_label",
    "fetch_examples",
    "is_local",
    "open_dataset",
    "shuffled_examples",
]

#: images per forward pass while selecting correctly classified images (fixed: selection runs on the main process)
SELECT_BATCH = 32


def is_local(path: str) -> bool:
    return os.path.isdir(os.path.expanduser(path))


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
    if label is None or isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise MoXIError(f"image {index} has label {label!r}; the label column must hold class indices")
    label = int(label)
    if not 0 <= label < num_labels:
        if label < 0:
            raise MoXIError(f"image {index} has label {label}: this split has no labels (use a labelled split)")
        raise MoXIError(f"image {index} has label {label} but the model has {num_labels} classes (0..{num_labels - 1})")
    return label
