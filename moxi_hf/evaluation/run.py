"""One evaluation run, under plain ``python`` or ``accelerate launch``: select data → explain chunks → write rows
→ summarise.

The output folder (:mod:`moxi_hf.artifacts.output_dir`) is resumable: a rerun of the same
configuration skips the images finished before (:mod:`.state`), a different one is refused. The
chunks are shared between processes (:mod:`.shards`); the main process writes the folder (:mod:`.outputs`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..artifacts import CONFIG_FILE, prepare_output_dir, public_name, publishable_config, run_settings
from ..defaults import default_model_path
from ..errors import MoXIError
from ..explainer import Explainer
from ..fileio import package_versions, write_json
from . import state
from .config import DEFAULT_NUM_IMAGES, EvaluationConfig, method_options
from .data import DataSource, is_local, open_dataset, zero_shot_explainer
from .devices import process_state, resolve_device
from .outputs import write_outputs
from .selection import select_images
from .shards import chunks_of, explain_chunks, image_cost

__all__ = ["evaluate", "methods_for"]


def _resolve_model(model: str | None) -> str:
    if model is None:
        return os.fspath(default_model_path())  # an existing folder, else MoXIError
    if is_local(model):
        return os.path.abspath(os.path.expanduser(model))
    return model


def methods_for(explainer, methods: Sequence[str] | None) -> list[str]:
    """``methods`` (refused when one cannot explain this model), or every method that can, in registry order."""
    if methods is None:
        return explainer.applicable_methods()
    for name in methods:
        reason = explainer.unsupported_reason(name)
        if reason:
            raise MoXIError(f"{reason}; drop it from --methods")
    return list(methods)


def _settings(config: EvaluationConfig, explainer, model: str, source: DataSource, methods: list[str],
              curves: list[str]) -> dict:
    """The run settings recorded in config.json (a rerun resumes only when they are the same)."""
    local_dataset = is_local(config.dataset)
    return run_settings(
        kind="evaluate", model=model, methods=methods, curves=curves,
        method_options={name: method_options(name, config) for name in methods}, explainer=explainer,
        dataset=public_name(config.dataset) if local_dataset else config.dataset,
        split=source.split,
        streaming=bool(config.streaming),
        shuffle_buffer=config.shuffle_buffer if config.streaming else None,
        image_column=config.image_column,
        label_column=config.label_column,
        num_images=None if config.per_class else (config.num_images or DEFAULT_NUM_IMAGES),
        per_class=config.per_class,
        seed=config.seed,
        batch_size=config.batch_size,
        embed_images=bool(local_dataset or config.embed_images),
        interaction_top=config.interaction_top if config.interactions else None,
    )


def _plan(process, output_dir: Path, explainer, source: DataSource, config: EvaluationConfig,
          n_rows: int) -> tuple[dict, list[list[int]]]:
    """The selected images (chosen on the main process, or kept from a previous run) and the chunks still to
    explain, the same on every process."""
    from accelerate.utils import broadcast_object_list

    plan: list = [None, None]
    if process.is_main_process:
        state.remove_stale_temporaries(output_dir)
        selection = state.read_selection(output_dir)
        if selection is None:
            selection = select_images(explainer, source, config, progress=not config.quiet)
            state.write_selection(output_dir, selection)
        images = selection["images"]
        pending = [chunk for chunk in chunks_of(len(images), config.batch_size)
                   if any(state.read_image_result(output_dir, p, images[p], n_rows) is None for p in chunk)]
        plan = [selection, pending]
    broadcast_object_list(plan)
    return plan[0], plan[1]


def evaluate(config: EvaluationConfig) -> dict:
    """Run the evaluation (every process of an ``accelerate launch`` calls this); returns the curves dict.

    The main process writes the output folder; the others return the same curves dict.
    """
    from accelerate.utils import broadcast_object_list

    config.validate()
    # MKL picks alignment-dependent kernels unless told not to: reproducible CPU results whatever
    # the process count or resume point need this (set before the first matrix product to count).
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    process = process_state(config.device)
    main = process.is_main_process
    output_dir = Path(config.output_dir).expanduser().resolve()
    model = _resolve_model(config.model)
    device = resolve_device(process, config.device)
    explainer = Explainer.from_pretrained(model, masking=config.masking, reward=config.reward,
                                          players_grid=config.players_grid, dtype=config.dtype, device=device,
                                          trust_remote_code=config.trust_remote_code,
                                          candidate_labels=config.candidate_labels,
                                          hypothesis_template=config.hypothesis_template)
    source = open_dataset(config)
    if explainer.zero_shot:
        explainer = zero_shot_explainer(explainer, source, given=config.candidate_labels is not None)
    source.match_model(explainer.label_names(), quiet=config.quiet or not main)
    methods = methods_for(explainer, config.methods)
    curves = list(config.curves)
    settings = _settings(config, explainer, model, source, methods, curves)
    settings["device"] = device.type
    local_dataset = is_local(config.dataset)
    dataset = os.path.abspath(os.path.expanduser(config.dataset)) if local_dataset else config.dataset
    identity = {"model": model, "dataset": dataset}
    output = prepare_output_dir(output_dir, "evaluate", overwrite=config.overwrite,
                                inputs=[dataset] if local_dataset else [], settings=settings, identity=identity)
    process.wait_for_everyone()  # every process has checked the folder before the main one changes it
    output.start_evaluation(identity, main=main, clear=config.overwrite)
    record = {**settings, "versions": package_versions()}
    if main:
        write_json(output_dir / CONFIG_FILE, publishable_config(record))

    selection, pending = _plan(process, output_dir, explainer, source, config, len(methods) * len(curves))
    cost = image_cost(explainer, config, methods, curves)
    if main and not config.quiet:
        from ..progress import slow_run_line

        slow = slow_run_line("moxi evaluate", explainer, cost, sum(len(chunk) for chunk in pending),
                             method_options("moxi", config) if "moxi" in methods else None,
                             processes=process.num_processes)
        if slow:
            print(slow, file=sys.stderr)
    results = explain_chunks(process, explainer, source, config, methods, curves, selection["images"], pending,
                             output_dir, cost)
    summary: list = [None]
    if main:
        rows = [row for result in results for row in result["rows"]]
        summary[0] = write_outputs(output_dir, explainer, source, config, record, selection, rows, methods, curves)
    broadcast_object_list(summary)
    if process.num_processes > 1:
        # gloo's worker threads must be joined before the interpreter exits, else the C++ runtime
        # aborts the process ("terminate called without an active exception") after the work is done.
        process.wait_for_everyone()
        process.destroy_process_group()
    return summary[0]
