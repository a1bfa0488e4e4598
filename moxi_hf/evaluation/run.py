"""One evaluation run, under plain ``python`` or ``accelerate launch``: chunks shared between processes, resumable.

Work is split into fixed chunks of ``batch_size`` consecutive selected images (their coalitions
share forward passes); the chunks, not the images, are shared between processes. Each finished
image is written atomically to ``OUTPUT/.partial/images/`` (hidden: never loaded as data, never
uploaded); a rerun of the same configuration skips finished images, a different one is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..artifacts import (
    CONFIG_FILE,
    PARTIAL_DIR,
    explanation_to_row,
    public_name,
    publishable_config,
    run_settings,
    save_artifacts,
)
from ..compare import INTERACTIONS_METHOD  # the method whose rows get gains and interaction maps
from ..errors import MoXIError
from ..explainer import Explainer
from ..fileio import atomic_write, package_versions, read_json, write_json
from ..interactions import attach_interactions, summarise_interaction_share
from ..methods import METHODS, Attribution, get_method
from ..metrics import aggregate_curves, measure_curves
from .config import DEFAULT_NUM_IMAGES, EvaluationConfig, default_model, method_options
from .data import DataSource, fetch_examples, is_local, open_dataset
from .selection import select_images

__all__ = ["check_output_dir", "evaluate", "explain_chunk", "format_summary", "methods_for"]

SELECTION_FILE = "selection.json"
#: absolute local folders of the run (resume tells two folders of the same name apart); hidden, never published
IDENTITY_FILE = "source.json"
#: images shown in plots/heatmaps.png
HEATMAP_IMAGES = 6
#: images preprocessed together when the pictures are written
PICTURE_BATCH = 32


def _resolve_model(model: str | None) -> str:
    if model is None:
        model = default_model()  # an existing folder, else MoXIError
    if is_local(model):
        return os.path.abspath(os.path.expanduser(model))
    return model


def explain_chunk(explainer, images: list, labels: list[int], indices: list[int],
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
    method_objects = {name: get_method(name, **method_options(name, config)) for name in methods}
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
            if config.interactions and name == INTERACTIONS_METHOD:
                # From the greedy's own attribution: the gain split needs the values it measured.
                attach_interactions(explanations, game, attributions[(name, curve)], curve, config.interaction_top)
            for position, explanation in enumerate(explanations):
                rows[position].append(explanation_to_row(explanation, dataset_index=indices[position]))
    return rows


_OWNED = ("data", "plots", PARTIAL_DIR, "curves.json", "config.json", "README.md")


def _settings_diff(old: dict, new: dict) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def check_output_dir(output_dir: Path, settings: dict, identity: dict | None = None) -> None:
    """Refuse an output folder that holds another run (or other files); a folder of this run is fine.

    ``identity``: the absolute local model/dataset folders, compared with those kept in the hidden
    ``.partial/`` state (config.json only names them by folder name).
    """
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
        identity_path = output_dir / PARTIAL_DIR / IDENTITY_FILE
        if identity and identity_path.is_file():
            kept = json.loads(identity_path.read_text())
            differs += [key for key in identity if key in kept and kept[key] != identity[key] and key not in differs]
        if differs:
            raise MoXIError(
                f"output dir {str(output_dir)!r} holds results of a different configuration (differs in: "
                f"{', '.join(differs)}); rerun with the same options to resume, or use another --output-dir "
                "or --overwrite"
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
    if not folder.is_dir():
        return 0
    return sum(1 for name in os.listdir(folder) if name.endswith(".json") and not name.startswith("."))


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


def methods_for(explainer, methods: Sequence[str] | None) -> list[str]:
    """``methods`` (refused when one cannot explain this model), or every method that can, in registry order."""
    names = list(methods) if methods is not None else list(METHODS)
    reasons = {name: METHODS[name].unsupported_reason(explainer.adapter) if name in METHODS else None
               for name in names}
    if methods is not None:
        for reason in reasons.values():
            if reason:
                raise MoXIError(f"{reason}; drop it from --methods")
        return names
    return [name for name in names if reasons[name] is None]


def evaluate(config: EvaluationConfig) -> dict:
    """Run the evaluation (every process of an ``accelerate launch`` calls this); returns the curves dict.

    The main process writes the output folder; the others return the same curves dict.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    config.validate()
    # MKL picks alignment-dependent kernels unless told not to: reproducible CPU results whatever
    # the process count or resume point need this (set before the first matrix product to count).
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    state = _partial_state(config.device)
    main = state.is_main_process
    output_dir = Path(config.output_dir).expanduser().resolve()
    model = _resolve_model(config.model)
    device = _resolve_device(state, config.device)
    explainer = Explainer.from_pretrained(model, masking=config.masking, reward=config.reward,
                                          players_grid=config.players_grid, dtype=config.dtype, device=device,
                                          trust_remote_code=config.trust_remote_code)
    source = open_dataset(config)
    source.match_model([explainer.label_name(label) for label in range(explainer.num_labels)],
                       quiet=config.quiet or not main)
    methods = methods_for(explainer, config.methods)
    curves = list(config.curves)
    n_rows = len(methods) * len(curves)  # rows per image: one per method and curve
    local_dataset = is_local(config.dataset)
    settings = run_settings(
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
    settings["device"] = device.type
    identity = {"model": model, "dataset": os.path.abspath(os.path.expanduser(config.dataset)) if local_dataset
                else config.dataset}
    if config.overwrite:
        if main:
            _clear_output_dir(output_dir)
    else:
        check_output_dir(output_dir, settings, identity)
    state.wait_for_everyone()
    record = {**settings, "versions": package_versions()}
    partial = output_dir / PARTIAL_DIR
    if main:
        write_json(partial / IDENTITY_FILE, identity)
        write_json(output_dir / CONFIG_FILE, publishable_config(record))

    # Selection: on the main process (or from a previous run), the same for every process.
    plan: list = [None, None]
    if main:
        for stale in (partial / "images").glob(".*.tmp"):  # left by a run killed while writing
            stale.unlink(missing_ok=True)
        selection_path = partial / SELECTION_FILE
        selection = read_json(selection_path)
        if selection is None:
            selection = select_images(explainer, source, config, progress=not config.quiet)
            atomic_write(selection_path, json.dumps(selection) + "\n")
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
        examples = fetch_examples(source, [images[p]["dataset_index"] for chunk in mine for p in chunk])
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
        summary[0] = _write_outputs(output_dir, explainer, source, config, record, selection, all_rows, methods,
                                    curves)
    broadcast_object_list(summary)
    if state.num_processes > 1:
        # gloo's worker threads must be joined before the interpreter exits, else the C++ runtime
        # aborts the process ("terminate called without an active exception") after the work is done.
        state.wait_for_everyone()
        state.destroy_process_group()
    return summary[0]


def _write_image_result(output_dir: Path, position: int, result: dict) -> None:
    atomic_write(_image_file(output_dir, position), json.dumps(result, separators=(",", ":")) + "\n")


def _pictures(explainer: Explainer, source: DataSource, config: EvaluationConfig, items: list[dict]) -> list:
    """(dataset_index, name, the model's view as PIL) of ``items``, fetched in batches."""
    out = []
    for start in range(0, len(items), PICTURE_BATCH):
        part = items[start:start + PICTURE_BATCH]
        examples = fetch_examples(source, [item["dataset_index"] for item in part])
        values = [examples[item["dataset_index"]][config.image_column] for item in part]
        views = explainer.model_views([source.decode(value) for value in values])
        for item, value, view in zip(part, values, views):
            out.append((item["dataset_index"], source.identifier(value), view))
    return out


def _cam_layers(explainer: Explainer, source: DataSource, config: EvaluationConfig, items: list[dict],
                methods: list[str]) -> dict:
    """Grad-CAM method -> ``{"cam_layer": name}``: the layer it read (one per model, found on the first image)."""
    cams = [name for name in methods if name in ("gradcam", "gradcam++")]
    if not cams or not items:
        return {}
    from ..methods.gradcam import cam_layer

    index = items[0]["dataset_index"]
    pixel_values, _ = explainer.preprocess([source.decode(fetch_examples(source, [index])[index][config.image_column])])
    _, layer = cam_layer(explainer.adapter, pixel_values.to(explainer.adapter.device, explainer.adapter.dtype))
    return {name: {"cam_layer": layer} for name in cams}


def _write_outputs(output_dir: Path, explainer: Explainer, source: DataSource, config: EvaluationConfig,
                   record: dict, selection: dict, rows: list[dict], methods: list[str], curves: list[str]) -> dict:
    from ..plotting import plot_curves, plot_heatmap_grid

    label_names = source.label_names
    if label_names is None:
        id2label = getattr(explainer.model.config, "id2label", None) or {}
        names = [id2label.get(i, id2label.get(str(i))) for i in range(explainer.num_labels)]
        label_names = [str(name) for name in names] if all(name is not None for name in names) else None
    summary = aggregate_curves(rows, methods, curves)
    summarise_interaction_share(summary, rows)
    n_images = len(selection["images"])
    model_name = public_name(record["model"])
    title = f"{model_name} on {public_name(config.dataset)} ({source.split}), {n_images} images"
    embed = record.get("embed_images")
    shown = selection["images"] if embed else selection["images"][:HEATMAP_IMAGES]
    pictures = _pictures(explainer, source, config, shown)
    by_index = {index: picture for index, _, picture in pictures}
    plots = {"curves": plot_curves(summary, "accuracy", title), "confidence": plot_curves(summary, "confidence", title)}
    for curve in curves:
        name = "heatmaps" if curve == curves[0] else f"heatmaps_{curve}"
        plots[name] = plot_heatmap_grid(rows, methods, curve, by_index, label_names, HEATMAP_IMAGES)
    selection_summary = {key: value for key, value in selection.items() if key != "images"}
    selection_summary["num_images"] = n_images
    final = {**record, "selection": selection_summary}
    chosen = _cam_layers(explainer, source, config, selection["images"][:1], methods)
    if chosen:
        final["method_settings"] = chosen
    save_artifacts(output_dir, rows, summary, final, label_names, plots, pictures=pictures if embed else None)
    if config.push_to_hub:
        _push(output_dir, summary, config)
    return summary


def _push(output_dir: Path, summary: dict, config: EvaluationConfig) -> None:
    """Print the results and the folder, then upload; a failure says the results are saved and how to retry."""
    from .. import hub

    if not config.quiet:
        print(format_summary(summary), flush=True)
        print(f"results saved in {output_dir}; pushing to dataset repo {config.push_to_hub}", file=sys.stderr)
    try:
        url = hub.push_artifacts(output_dir, config.push_to_hub, private=config.hub_private)
    except MoXIError as error:
        raise MoXIError(f"{error} -- the results are saved in {output_dir}; retry the upload with "
                        f"`{hub.retry_command(output_dir, config.push_to_hub)}`") from None
    if not config.quiet:
        print(f"pushed to {url}", file=sys.stderr)


def format_summary(curves: dict) -> str:
    """A plain-text AUC table: method, curve, accuracy AUC, confidence AUC, images."""
    shares = any("interaction_share" in entry for by_curve in curves.values() for entry in by_curve.values())
    lines = [f"{'method':<20}{'curve':<11}{'acc AUC':>9}{'p(y) AUC':>10}{'images':>8}"
             + (f"{'interaction share':>19}" if shares else "")]
    for method, by_curve in curves.items():
        for curve, entry in by_curve.items():
            share = entry.get("interaction_share")
            lines.append(f"{method:<20}{curve:<11}{entry['auc']:>9.3f}{entry['confidence_auc']:>10.3f}"
                         f"{entry['num_images']:>8}" + (f"{share:>19.3f}" if share is not None else ""))
    if shares:
        lines.append("interaction share: mean over the images of the share of the gain of the patches needed "
                     "that came from interaction (MoXI)")
    return "\n".join(lines)
