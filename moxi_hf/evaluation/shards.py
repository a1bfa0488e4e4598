"""The sharded loop of an evaluation: fixed chunks of selected images shared between processes.

Work is split into fixed chunks of ``batch_size`` consecutive selected images (their coalitions share
forward passes); the chunks, not the images, are shared between processes, so results do not depend
on the number of processes. Each finished image is written to the resume state at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..artifacts import explanation_to_row
from ..compare import INTERACTIONS_METHOD  # the method whose rows get gains and interaction maps
from ..cost import Cost
from ..errors import MoXIError
from ..progress import WorkBar
from . import state
from .config import EvaluationConfig, method_options
from .data import DataSource, fetch_examples

__all__ = ["chunks_of", "explain_chunk", "explain_chunks", "image_cost"]


def chunks_of(count: int, size: int) -> list[list[int]]:
    """Positions 0..count-1 in consecutive chunks of ``size``."""
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def _run_arguments(config: EvaluationConfig, methods: Sequence[str]) -> dict:
    """The method options and interaction settings of an evaluation's explanations (and of their cost)."""
    return {"options": {name: method_options(name, config) for name in methods},
            "interactions": {INTERACTIONS_METHOD} if config.interactions else False,
            "interaction_top": config.interaction_top}


def image_cost(explainer, config: EvaluationConfig, methods: Sequence[str], curves: Sequence[str]):
    """What one image of the evaluation costs (:meth:`moxi_hf.Explainer.cost`; None when unknown)."""
    return explainer.cost(methods, curves, **_run_arguments(config, methods))


def explain_chunk(explainer, images: list, labels: list[int], indices: list[int],
                  names: list[str | None], methods: Sequence[str], curves: Sequence[str],
                  config: EvaluationConfig, on_chunk=None) -> list[list[dict]]:
    """Rows (methods × curves, in that order) for each image of one chunk, from
    :meth:`moxi_hf.Explainer.explain_methods` (all images share forward passes; every curve measured
    the same way on the final orders)."""
    batch = explainer.explain_methods(images, methods, curves, labels, on_chunk=on_chunk,
                                      **_run_arguments(config, methods))
    return [[explanation_to_row(batch[(method, curve)][i], dataset_index=indices[i], image=names[i])
             for method in methods for curve in curves] for i in range(len(batch))]


def explain_chunks(process, explainer, source: DataSource, config: EvaluationConfig, methods: Sequence[str],
                   curves: Sequence[str], images: list[dict], pending: list[list[int]], output_dir: Path,
                   cost: Cost | None) -> list[dict]:
    """Explain the ``pending`` chunks (positions into ``images``, the selection), shared between the processes
    of ``process`` (Accelerate's state); ``cost``: one image's (:func:`image_cost`), the progress bar's unit.
    Returns every image's result in selection order on the main process
    (finished ones of earlier runs read back), an empty list on the others."""
    from accelerate.utils import gather_object

    main = process.is_main_process
    total = len(images)
    with process.split_between_processes(pending) as mine:
        # The main process shows its own share of the work (the processes share it evenly) in token-forwards.
        mine_count = sum(len(chunk) for chunk in mine)
        work = explainer.token_forwards(cost, mine_count)
        bar = WorkBar(work, "evaluate", disable=not main or config.quiet)
        bar.note(f"{total - sum(len(chunk) for chunk in pending)}/{total} images")
        finished: list[dict] = []
        examples = fetch_examples(source, [images[p]["dataset_index"] for chunk in mine for p in chunk])
        for chunk in mine:
            chosen = [images[p] for p in chunk]
            values = [examples[item["dataset_index"]][config.image_column] for item in chosen]
            rows = explain_chunk(
                explainer, [source.decode(value) for value in values], [item["label"] for item in chosen],
                [item["dataset_index"] for item in chosen], [source.identifier(value) for value in values],
                methods, curves, config, on_chunk=bar,
            )
            for position, item, image_rows in zip(chunk, chosen, rows):
                result = {"position": position, **item, "rows": image_rows}
                state.write_image_result(output_dir, position, result)
                finished.append(result)
            if main:
                bar.note(f"{state.count_finished(output_dir)}/{total} images")
    gathered = gather_object(finished)
    bar.close()
    if not main:
        return []
    by_position = {result["position"]: result for result in gathered}
    n_rows = len(methods) * len(curves)
    results = []
    for position, item in enumerate(images):
        result = by_position.get(position) or state.read_image_result(output_dir, position, item, n_rows)
        if result is None:
            raise MoXIError(f"the result of image {position} (dataset index {item['dataset_index']}) is missing")
        results.append(result)
    return results
