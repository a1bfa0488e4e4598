"""Insertion/deletion evaluation over a ``datasets`` split, under plain ``python`` or ``accelerate launch``.

The protocol: shuffle the split with ``seed``; keep the first ``num_images`` images the model
classifies correctly on the whole image (or the first ``per_class`` correct images of every
class); the true label is the target. For every method and curve compute the order of the players,
then the accuracy curve (is the label still/already predicted after k = 0..P players were
deleted/inserted, k = 0 measured) and the confidence curve p(label), averaged over the images;
AUC = the mean of a curve over k = 0..P (:func:`moxi_hf.metrics.aggregate_curves`).

- :mod:`.config`: :class:`EvaluationConfig` and defaults
- :mod:`.data`: the split (Hub id or local folder), its seeded order, random access
- :mod:`.selection`: the correctly classified images evaluated
- :mod:`.run`: the sharded, resumable run and the output folder (layout of :mod:`moxi_hf.artifacts`)
"""

from __future__ import annotations

from ..artifacts import PARTIAL_DIR
from .config import DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_NUM_IMAGES, EvaluationConfig, default_model, method_options
from .data import DataSource, open_dataset
from .run import check_output_dir, evaluate, explain_chunk, format_summary, methods_for
from .selection import select_images

__all__ = [
    "DEFAULT_DATASET", "DEFAULT_MODEL", "DEFAULT_NUM_IMAGES", "PARTIAL_DIR", "DataSource", "EvaluationConfig",
    "check_output_dir", "default_model", "evaluate", "explain_chunk", "format_summary", "method_options",
    "methods_for", "open_dataset", "select_images",
]
