"""Which images are evaluated: the first correctly classified ones in the seeded shuffled order."""

from __future__ import annotations

import sys

import torch
from tqdm.auto import tqdm

from ..errors import MoXIError
from .config import DEFAULT_NUM_IMAGES, EvaluationConfig
from .data import SELECT_BATCH, DataSource, shuffled_examples

__all__ = ["select_images"]


def select_images(explainer, source: DataSource, config: EvaluationConfig, progress: bool = False) -> dict:
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
        labels = [source.model_label(example[config.label_column], explainer.num_labels, index)
                  for index, example in pending]
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

    for item in shuffled_examples(source, config):
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
        short = [label for label in source.class_labels or range(num_classes) if counts.get(label, 0) < per_class]
        if short and progress:
            print(f"moxi evaluate: {len(short)} of {num_classes} classes have fewer than {per_class} correctly "
                  f"classified images in the split (e.g. class {short[0]})", file=sys.stderr)
    elif len(chosen) < wanted and progress:
        print(f"moxi evaluate: only {len(chosen)} of the {scanned} images are classified correctly "
              f"(asked for {wanted}); evaluating those", file=sys.stderr)
    return selection
