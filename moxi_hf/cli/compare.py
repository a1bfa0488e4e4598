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
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation
from ..methods import CURVES, METHODS
from ..metrics import auc, measure_curves, patches_needed
from .explain import (
    add_method_option_flags, add_model_flags, batches, check_images, describe_class, load_explainer, load_images, method_options,
    output_names, resolve_images,
)

__all__ = ["add_parser", "run", "compare_batch", "compare_images", "plot_comparison"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import add_common_flags

    parser = subparsers.add_parser(
        "compare",
        help="all methods on each image: heatmaps and insertion/deletion curves in one PNG",
        description="Run several methods on each image and write DIR/<image>/compare.png (a row of heatmaps, "
                    "one per method, and the insertion and deletion curves of p(label), one line per method) "
                    "and DIR/<image>/compare.json. Without --model/--image it uses the embedded default model "
                    "and its sample digits.",
    )
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), metavar="METHOD",
                        help=f"methods to compare (default: all that apply to the model: {', '.join(METHODS)})")
    parser.add_argument("--curve", choices=CURVES, default="insertion",
                        help="the curve whose orders the heatmaps show (default: insertion)")
    add_model_flags(parser)
    add_method_option_flags(parser)
    add_common_flags(parser)
    parser.set_defaults(run=run)
    return parser


def _curve_record(order: torch.Tensor, probabilities: torch.Tensor, predictions: torch.Tensor, label: int,
                  curve: str) -> dict:
    n_players = order.numel()
    return {
        "order": order.tolist(),
        "probabilities": probabilities.tolist(),
        "predictions": predictions.tolist(),
        "patches_needed": patches_needed(predictions, label, curve, n_players),
        "auc": float(auc(probabilities)),
    }


def compare_batch(explainer: Explainer, images: list, labels: Sequence[int] | None, methods: Sequence[str],
                  heatmap_curve: str, options: dict[str, dict], progress: bool = False,
                  explicit: bool = True) -> list[dict]:
    """Run ``methods`` on a batch of images; one result dict per image.

    Each result: ``label``, ``label_name``, ``predicted``, ``grid``, ``methods`` (name -> {``heatmap``:
    the Explanation for ``heatmap_curve``, ``insertion``/``deletion``: :func:`_curve_record`}) and
    ``skipped`` (name -> reason) for methods that do not apply to this model (only when not ``explicit``).
    """
    pixel_values, pil_images = explainer.preprocess(images)
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
            heat.pil_image = pil_images[index]
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
        })
    return results


def comparison_to_dict(result: dict, image: str | None = None) -> dict:
    """The JSON-able part of a :func:`compare_batch` result (heatmap explanations as dicts)."""
    out = {key: value for key, value in result.items() if key not in ("methods", "pil_image")}
    out["image"] = image
    out["methods"] = {
        name: {"explanation": record["heatmap"].to_dict(), "insertion": record["insertion"],
               "deletion": record["deletion"]}
        for name, record in result["methods"].items()
    }
    return out


def plot_comparison(result: dict, path: str | os.PathLike, title: str | None = None) -> None:
    """One PNG: the image and one heatmap per method on top; insertion and deletion curves below."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = list(result["methods"])
    columns = len(methods) + 1
    figure = plt.figure(figsize=(max(1.9 * columns, 8.0), 5.6))
    top, bottom = figure.add_gridspec(2, 1, height_ratios=[1.0, 1.5], hspace=0.25)
    heat_axes = top.subgridspec(1, columns, wspace=0.15).subplots()
    heat_axes = list(heat_axes) if columns > 1 else [heat_axes]
    image_ax = heat_axes[0]
    image_ax.imshow(result["pil_image"], interpolation="nearest")
    image_ax.set_axis_off()
    image_ax.set_title(f"input\npredicted {describe_class(result['predicted'], result['predicted_name'])}", fontsize=9)
    n_players = result["grid"][0] * result["grid"][1]
    for ax, name in zip(heat_axes[1:], methods):
        explanation: Explanation = result["methods"][name]["heatmap"]
        explanation.plot(ax=ax, title=f"{name}\n{explanation.patches_needed}/{n_players} needed")
    curve_axes = bottom.subgridspec(1, 2, wspace=0.22).subplots()
    for ax, curve in zip(curve_axes, CURVES):
        for name in methods:
            record = result["methods"][name][curve]
            ax.plot(range(len(record["probabilities"])), record["probabilities"], label=f"{name} ({record['auc']:.2f})",
                    linewidth=1.4)
        ax.set_xlabel(f"players {'inserted' if curve == 'insertion' else 'deleted'} (of {n_players})")
        ax.set_ylabel("p(label)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, n_players)
        ax.grid(alpha=0.3)
        ax.set_title(f"{curve} curve (legend: AUC)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right" if curve == "insertion" else "upper right")
    label = describe_class(result["label"], result["label_name"])
    figure.suptitle(title or f"label {label}; heatmaps: {result['curve']} orders", fontsize=10)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def compare_images(explainer: Explainer, paths: Sequence[Path], names: Sequence[str], args: argparse.Namespace,
                   methods: Sequence[str], explicit: bool = True) -> list[dict]:
    """Compare ``methods`` on every image in batches; write compare.png / compare.json; print a summary."""
    from tqdm.auto import tqdm

    from ..artifacts import write_json

    options = {name: method_options(name, args, strict=False) for name in methods}
    options.get("moxi", {}).pop("early_stop", None)  # curves need complete orders
    output_dir = Path(args.output_dir)
    results = []
    warned: set[str] = set()
    with tqdm(total=len(paths), desc="compare", unit="image", disable=args.quiet) as bar:
        for start, chunk in batches(list(paths), args.batch_size):
            labels = None if args.label is None else [args.label] * len(chunk)
            batch = compare_batch(explainer, load_images(chunk), labels, methods, args.curve, options,
                                  progress=not args.quiet, explicit=explicit)
            for offset, result in enumerate(batch):
                path, name = chunk[offset], names[start + offset]
                for record in result["methods"].values():
                    record["heatmap"].image = os.fspath(path)
                for skipped, reason in result["skipped"].items():
                    if skipped not in warned and not args.quiet:
                        tqdm.write(f"moxi: skipping {skipped}: {reason}", file=sys.stderr)
                    warned.add(skipped)
                folder = output_dir / name
                folder.mkdir(parents=True, exist_ok=True)
                plot_comparison(result, folder / "compare.png")
                write_json(folder / "compare.json", comparison_to_dict(result, os.fspath(path)))
                if not args.quiet:
                    needed = ", ".join(f"{m} {r[args.curve]['patches_needed']}" for m, r in result["methods"].items())
                    tqdm.write(f"{path.name}: predicted {describe_class(result['predicted'], result['predicted_name'])}"
                               f"; patches needed ({args.curve}): {needed} -> {folder / 'compare.png'}",
                               file=sys.stdout)
                results.append(result)
            bar.update(len(chunk))
    return results


def run(args: argparse.Namespace) -> int:
    methods = list(dict.fromkeys(args.methods or METHODS))
    explicit = bool(args.methods)
    check_images(args)  # fail fast on missing or unreadable files, before loading the model
    explainer = load_explainer(args)
    paths = resolve_images(args)
    names = output_names(paths)
    results = compare_images(explainer, paths, names, args, methods, explicit=explicit)
    if not args.quiet:
        print(f"Compared {len(results[0]['methods'])} method(s) on {len(paths)} image(s): per image "
              f"{Path(args.output_dir)}{os.sep}<image>{os.sep}{{compare.png, compare.json}}")
    return 0
