"""``moxi compare``: every method on one image, side by side: heatmaps plus insertion and deletion curves.

For each image it writes ``DIR/<image>/compare.png`` (a row of heatmaps, one per method, for
``--curve``; below, p(label) against players inserted and players deleted, one line per method)
and ``DIR/<image>/compare.json`` (per method and curve: order, p(label) and prediction per k,
patches needed, AUC). Methods whose order depends on the curve (moxi, self-shapley) are run once
per curve; the others are run once and their order is measured on both curves.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import MoXIError
from ..options import CURVES, METHOD_NAMES
from .common import (
    InputImage,
    add_common_flags,
    add_method_option_flags,
    add_model_flags,
    batches,
    describe_class,
    finish,
    load_explainer,
    load_images,
    method_options,
    output_names,
    readable_images,
)

__all__ = ["add_parser", "compare_batch", "compare_images", "comparison_to_dict", "run"]

DEFAULT_OUTPUT_DIR = "moxi-output"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="all methods on each image: heatmaps and insertion/deletion curves in one PNG",
        description="Run several methods on each image and write DIR/<image>/compare.png (a row of heatmaps, "
                    "one per method, and the insertion and deletion curves of p(label), one line per method) "
                    "and DIR/<image>/compare.json. Without --model/--image it uses the embedded default model "
                    "and its sample digits.",
    )
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                        help=f"methods to compare (default: all that apply to the model: {', '.join(METHOD_NAMES)})")
    parser.add_argument("--curve", choices=CURVES, default="insertion",
                        help="the curve whose orders the heatmaps show (default: insertion)")
    add_model_flags(parser, "where results go, one folder per image", DEFAULT_OUTPUT_DIR)
    add_method_option_flags(parser, curve_safe_only=True)
    add_common_flags(parser)
    parser.set_defaults(run=run)
    return parser


def _curve_record(order, probabilities, predictions, label: int,
                  curve: str) -> dict:
    from ..metrics import auc, patches_needed

    n_players = order.numel()
    return {
        "order": order.tolist(),
        "probabilities": probabilities.tolist(),
        "predictions": predictions.tolist(),
        "patches_needed": patches_needed(predictions, label, curve, n_players),
        "auc": float(auc(probabilities)),
    }


def compare_batch(explainer, images: list, labels: Sequence[int] | None, methods: Sequence[str],
                  heatmap_curve: str, options: dict[str, dict], progress: bool = False,
                  explicit: bool = True) -> list[dict]:
    """Run ``methods`` on a batch of images; one result dict per image.

    Each result: ``label``, ``label_name``, ``predicted``, ``grid``, ``methods`` (name -> {``heatmap``:
    the Explanation for ``heatmap_curve``, ``insertion``/``deletion``: :func:`_curve_record`}) and
    ``skipped`` (name -> reason) for methods that do not apply to this model (only when not ``explicit``).
    """
    import torch

    from ..methods import METHODS
    from ..metrics import measure_curves

    pixel_values, pil_images = explainer.preprocess(images)
    views = explainer.model_views(pil_images)
    predicted = explainer.predict(pixel_values)
    targets = explainer._check_labels(labels if labels is not None else [None] * len(predicted), predicted)
    per_method: dict[str, dict[str, list]] = {}
    skipped: dict[str, str] = {}
    for name in methods:
        runs = CURVES if METHODS[name].depends_on_curve else (heatmap_curve,)
        try:
            explained = {curve: explainer.explain_batch(pixel_values, name, curve, targets, progress=progress,
                                                        **options.get(name, {}))
                         for curve in runs}
        except MoXIError as error:
            if explicit:
                raise MoXIError(f"{name}: {error}") from None
            skipped[name] = str(error)
            continue
        records: dict[str, list] = {"heatmap": explained[heatmap_curve]}
        for curve in CURVES:
            if curve in explained:
                records[curve] = [
                    _curve_record(torch.tensor(e.order), torch.tensor(e.curve_probabilities),
                                  torch.tensor(e.curve_predictions), e.label, curve) for e in explained[curve]]
            else:  # the same order, measured on the other curve
                game = explainer.value_function(pixel_values, targets)
                orders = torch.tensor([e.order for e in explained[heatmap_curve]])
                measured = measure_curves(game, orders, curve)
                records[curve] = [
                    _curve_record(orders[i], measured.probabilities[i], measured.predictions[i], targets[i], curve)
                    for i in range(len(targets))]
        per_method[name] = records
    if not per_method:
        raise MoXIError("none of the methods applies to this model: "
                        + "; ".join(f"{name}: {reason}" for name, reason in skipped.items()))
    results = []
    for index, target in enumerate(targets):
        methods_out = {}
        for name, records in per_method.items():
            heat = records["heatmap"][index]
            heat.pil_image, heat.display_image = pil_images[index], views[index]
            methods_out[name] = {"heatmap": heat, "insertion": records["insertion"][index],
                                 "deletion": records["deletion"][index]}
        results.append({
            "label": target,
            "label_name": explainer.label_name(target),
            "predicted": int(predicted[index]),
            "predicted_name": explainer.label_name(int(predicted[index])),
            "grid": list(explainer.players.grid),
            "patch_grid": list(explainer.players.patch_grid),
            "curve": heatmap_curve,
            "model": explainer.name,
            "methods": methods_out,
            "skipped": skipped,
            "pil_image": pil_images[index],
            "display_image": views[index],
        })
    return results


def comparison_to_dict(result: dict, image: str | None = None) -> dict:
    """The JSON-able part of a :func:`compare_batch` result (heatmap explanations as dicts)."""
    from ..artifacts import public_name

    out = {key: value for key, value in result.items() if key not in ("methods", "pil_image", "display_image")}
    out["model"] = public_name(out.get("model"))
    out["image"] = image
    out["methods"] = {
        name: {"explanation": record["heatmap"].to_dict(), "insertion": record["insertion"],
               "deletion": record["deletion"]}
        for name, record in result["methods"].items()
    }
    return out


def compare_images(explainer, images: Sequence[InputImage], names: Sequence[str], args: argparse.Namespace,
                   methods: Sequence[str], explicit: bool = True, folder: Path | None = None) -> list[dict]:
    """Compare ``methods`` on every image in batches; write compare.png / compare.json; print a summary.

    ``folder``: where to write (default ``--output-dir``); the printed paths always name ``--output-dir``.
    """
    import sys

    from tqdm.auto import tqdm

    from ..artifacts import public_name
    from ..fileio import write_json
    from ..plotting import plot_comparison, save_figure

    options = {name: method_options(name, args, strict=False, curve_safe_only=True) for name in methods}
    output_dir = Path(args.output_dir)
    folder = folder or output_dir
    results = []
    warned: set[str] = set()
    with tqdm(total=len(images), desc="compare", unit="image", disable=args.quiet) as bar:
        for start, chunk in batches(list(images), args.batch_size):
            labels = None if args.label is None else [args.label] * len(chunk)
            batch = compare_batch(explainer, load_images(chunk), labels, methods, args.curve, options,
                                  progress=not args.quiet, explicit=explicit)
            for offset, result in enumerate(batch):
                image, name = chunk[offset], names[start + offset]
                for record in result["methods"].values():
                    record["heatmap"].image = image.name
                    record["heatmap"].model = public_name(record["heatmap"].model)
                for skipped, reason in result["skipped"].items():
                    if skipped not in warned and not args.quiet:
                        tqdm.write(f"moxi: skipping {skipped}: {reason}", file=sys.stderr)
                    warned.add(skipped)
                save_figure(plot_comparison(result), folder / name / "compare.png", dpi=110)
                write_json(folder / name / "compare.json", comparison_to_dict(result, image.name))
                if not args.quiet:
                    needed = ", ".join(f"{m} {r[args.curve]['patches_needed']}" for m, r in result["methods"].items())
                    predicted = describe_class(result["predicted"], result["predicted_name"])
                    tqdm.write(f"{image.file_name}: predicted {predicted}"
                               f"; patches needed ({args.curve}): {needed} -> {output_dir / name / 'compare.png'}",
                               file=sys.stdout)
                results.append(result)
            bar.update(len(chunk))
    return results


def run(args: argparse.Namespace) -> int:
    methods = list(dict.fromkeys(args.methods or METHOD_NAMES))
    explicit = bool(args.methods)
    images, bad = readable_images(args)  # before loading the model
    explainer = load_explainer(args)
    names = output_names(images)
    results = compare_images(explainer, images, names, args, methods, explicit=explicit)
    if not args.quiet:
        print(f"Compared {len(results[0]['methods'])} method(s) on {len(images)} image(s): per image "
              f"{Path(args.output_dir)}{os.sep}<image>{os.sep}{{compare.png, compare.json}}")
    return finish(bad, len(bad) + len(images))
