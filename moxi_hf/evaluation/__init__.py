"""Insertion/deletion evaluation over a ``datasets`` split, under plain ``python`` or ``accelerate launch``.

The protocol: shuffle the split with ``seed``; keep the first ``num_images`` images the model
classifies correctly on the whole image (or the first ``per_class`` correct images of every
class); the true label is the target. For every method and curve compute the order of the players,
then the accuracy curve (is the label still/already predicted after k = 0..P players were
deleted/inserted, k = 0 measured) and the confidence curve p(label), averaged over the images;
AUC = the mean of a curve over k = 0..P (:func:`moxi_hf.metrics.aggregate_curves`).

- :mod:`.config`: :class:`EvaluationConfig` (the methods' options derived from their declarations)
- :mod:`.data`: the split (Hub id or local folder), its seeded order, random access
- :mod:`.selection`: the correctly classified images evaluated
- :mod:`.run`: the run: select data → explain chunks → write rows → summarise
- :mod:`.devices`, :mod:`.state`, :mod:`.shards`, :mod:`.outputs`, :mod:`.summary`: each process's device,
  the hidden resume state, the chunks shared between processes, the finished folder, the text table
"""

from __future__ import annotations

from .config import DEFAULT_DATASET, DEFAULT_NUM_IMAGES, EvaluationConfig, method_options
from .data import DataSource, open_dataset
from .run import evaluate, methods_for
from .selection import select_images
from .shards import explain_chunk
from .summary import format_summary

__all__ = [
    "DEFAULT_DATASET", "DEFAULT_NUM_IMAGES", "DataSource", "EvaluationConfig", "evaluate", "explain_chunk",
    "format_summary", "method_options", "methods_for", "open_dataset", "select_images",
]
