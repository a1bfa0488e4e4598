"""What a finished evaluation writes: the artifact folder (rows, curves, pictures, plots, card) and its upload."""

from __future__ import annotations

import sys
from pathlib import Path

from ..artifacts import public_name, save_artifacts
from ..errors import MoXIError
from ..explainer import Explainer
from ..interactions import summarise_interaction_share
from ..metrics import aggregate_curves
from .config import EvaluationConfig
from .data import DataSource, fetch_examples
from .summary import format_summary

__all__ = ["HEATMAP_IMAGES", "write_outputs"]

#: images shown in plots/heatmaps.png
HEATMAP_IMAGES = 6
#: images preprocessed together when the pictures are written
PICTURE_BATCH = 32


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


def write_outputs(output_dir: Path, explainer: Explainer, source: DataSource, config: EvaluationConfig,
                   record: dict, selection: dict, rows: list[dict], methods: list[str], curves: list[str]) -> dict:
    from ..plotting import plot_curves, plot_heatmap_grid

    label_names = source.label_names or explainer.label_names()
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
    if explainer.zero_shot and selection.get("scanned"):  # the classes named by text: how often the top one is right
        selection_summary["zero_shot_accuracy"] = selection["correct"] / selection["scanned"]
    final = {**record, "selection": selection_summary}
    chosen = _cam_layers(explainer, source, config, selection["images"][:1], methods)
    if chosen:
        final["method_settings"] = chosen
    save_artifacts(output_dir, rows, summary, final, label_names, plots, pictures=pictures if embed else None)
    if config.push_to_hub:
        _push(output_dir, summary, config, final)
    return summary


def _push(output_dir: Path, summary: dict, config: EvaluationConfig, record: dict) -> None:
    """Print the results and the folder, then upload; a failure says the results are saved and how to retry."""
    from ..artifacts import hub

    if not config.quiet:
        print(format_summary(summary, record), flush=True)
        print(f"results saved in {output_dir}; pushing to dataset repo {config.push_to_hub}", file=sys.stderr)
    try:
        url = hub.push_artifacts(output_dir, config.push_to_hub, private=config.hub_private)
    except MoXIError as error:
        raise MoXIError(f"{error} -- the results are saved in {output_dir}; retry the upload with "
                        f"`{hub.retry_command(output_dir, config.push_to_hub)}`") from None
    if not config.quiet:
        print(f"pushed to {url}", file=sys.stderr)
