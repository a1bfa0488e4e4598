"""``moxi compare``: every method on one image, side by side: heatmaps plus insertion and deletion curves.

For each image it writes ``DIR/<image>/compare.png`` (a row of heatmaps, one per method, for
``--curve``; below, p(label) against players inserted and players deleted, one line per method),
``DIR/<image>/compare.json`` (per method and curve: order, p(label) and prediction per k,
patches needed, AUC) and, when MoXI is among the methods, ``DIR/<image>/compare_interactions.png``
(MoXI's interaction map and gain split). The computation is :func:`moxi_hf.compare.compare_methods`.
The output folder is the command's own, as for ``moxi explain`` (:mod:`moxi_hf.artifacts.output_dir`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..compare import INTERACTIONS_METHOD
from ..options import CURVES, DEFAULT_INTERACTION_TOP, METHOD_NAMES
from .common import (
    INTERRUPTED,
    InputImage,
    add_interaction_flags,
    add_method_option_flags,
    add_model_flags,
    add_sub_command,
    batches,
    finish,
    interrupted_note,
    load_explainer,
    load_images,
    local_paths,
    method_options,
    output_names,
    readable_images,
    refuse_unused_options,
)

__all__ = ["COMPARE_FILES", "add_parser", "compare_images", "run"]

DEFAULT_OUTPUT_DIR = "moxi-compare"
INTERACTIONS_FILE = "compare_interactions.png"
#: what a comparison writes in each image's folder
COMPARE_FILES = ("compare.png", "compare.json", INTERACTIONS_FILE)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(
        subparsers, "compare", run,
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
    add_model_flags(parser, "where results go, one folder per image; a previous moxi compare output there is "
                            "replaced", DEFAULT_OUTPUT_DIR)
    parser.add_argument("--overwrite", action="store_true",
                        help="clear --output-dir even when it holds something other than a moxi compare output")
    add_method_option_flags(parser, curve_safe_only=True)
    add_interaction_flags(parser, switch=False)
    return parser


def compare_options(methods: Sequence[str], args: argparse.Namespace) -> dict[str, dict]:
    """method -> its options from the flags (those that keep orders complete; flags for other methods ignored)."""
    return {name: method_options(name, args, strict=False, curve_safe_only=True) for name in methods}


def compare_images(explainer, images: Sequence[InputImage], names: Sequence[str], args: argparse.Namespace,
                   methods: Sequence[str], explicit: bool = True, folder: Path | None = None,
                   finished: list | None = None) -> list[dict]:
    """Compare ``methods`` on every image in batches; write compare.png / compare.json (and MoXI's
    compare_interactions.png); print a summary.

    ``folder``: where to write (default ``--output-dir``); the printed paths always name ``--output-dir``.
    ``finished``: each image's result is appended to it once its files are written (and returned).
    """
    from tqdm.auto import tqdm

    from ..artifacts import public_name
    from ..compare import compare_methods, comparison_to_dict
    from ..fileio import write_json
    from ..plotting import plot_comparison, save_figure

    options = compare_options(methods, args)
    output_dir = Path(args.output_dir)
    folder = folder or output_dir
    results = finished if finished is not None else []
    warned: set[str] = set()
    with tqdm(total=len(images), desc="compare", unit="image", disable=args.quiet) as bar:
        for start, chunk in batches(list(images), args.batch_size):
            labels = None if args.label is None else [args.label] * len(chunk)
            batch = compare_methods(explainer, load_images(chunk), methods if explicit else None, args.curve, labels,
                                    options, interaction_top=args.interaction_top or DEFAULT_INTERACTION_TOP,
                                    progress=not args.quiet)
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
                if INTERACTIONS_METHOD in result["methods"]:
                    result["methods"][INTERACTIONS_METHOD]["heatmap"].plot_interactions(
                        folder / name / INTERACTIONS_FILE)
                if not args.quiet:
                    needed = ", ".join(f"{m} {r[args.curve]['patches_needed']}" for m, r in result["methods"].items())
                    predicted = explainer.label_text(result["predicted"])
                    tqdm.write(f"{image.file_name}: predicted {predicted}"
                               f"; patches needed ({args.curve}): {needed} -> {output_dir / name / 'compare.png'}",
                               file=sys.stdout)
                results.append(result)
            bar.update(len(chunk))
    return results


def run(args: argparse.Namespace) -> int:
    from ..artifacts import prepare_output_dir, publishable_config, run_settings
    from ..fileio import package_versions, write_json
    from ..methods import get_method

    methods = list(dict.fromkeys(args.methods or METHOD_NAMES))
    refuse_unused_options(methods, args)
    for name, chosen in compare_options(methods, args).items():  # bad option values fail here, before the model loads
        get_method(name, **chosen)
    explicit = bool(args.methods)
    output_dir = Path(args.output_dir)
    images, bad = readable_images(args)  # before loading the model
    output = prepare_output_dir(output_dir, "compare", overwrite=args.overwrite, inputs=local_paths(images))
    explainer = load_explainer(args)
    names = output_names(images)
    results: list = []
    stopped = False
    try:
        with output.staged() as staging:
            try:
                compare_images(explainer, images, names, args, methods, explicit=explicit, folder=staging,
                               finished=results)
            except KeyboardInterrupt:
                if not results:
                    raise
                stopped = True
                for name in names[len(results):]:
                    for file in COMPARE_FILES:
                        (staging / name / file).unlink(missing_ok=True)
            compared = list(results[0]["methods"])
            config = run_settings(kind="compare", model=explainer.name, methods=compared, curves=list(CURVES),
                                  method_options=compare_options(compared, args), explainer=explainer,
                                  command="moxi compare", curve=args.curve,
                                  images=names[:len(results)], versions=package_versions())
            if stopped:
                config["interrupted"] = {"images": len(results), "of": len(images)}
            write_json(staging / "config.json", publishable_config(config))
    except KeyboardInterrupt:
        print(interrupted_note("compare", 0, len(images), output_dir), file=sys.stderr)
        return INTERRUPTED
    if stopped:
        print(interrupted_note("compare", len(results), len(images), output_dir), file=sys.stderr)
        return INTERRUPTED
    if not args.quiet:
        files = "compare.png, compare.json" + (f", {INTERACTIONS_FILE}" if INTERACTIONS_METHOD in compared else "")
        print(f"Compared {len(compared)} method(s) on {len(images)} image(s): per image "
              f"{output_dir}{os.sep}<image>{os.sep}{{{files}}}")
    return finish(bad, len(bad) + len(images))
