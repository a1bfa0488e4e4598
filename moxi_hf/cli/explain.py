"""``moxi explain``: explain images with one method; an artifact folder plus ``<image>/explanation.json``, ``heatmap.png``.

Without ``--model``/``--image`` it explains the sample digits of the embedded default model. The
output folder is its own (:mod:`moxi_hf.artifacts.output_dir`): a rerun replaces only the files the
previous ``moxi explain`` wrote there; any other non-empty folder is refused (``--overwrite`` clears
it); a folder holding the input images is refused. Ctrl+C keeps the images already explained as a
smaller output marked as interrupted (exit code 130).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import MoXIError
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
    model_label,
    output_names,
    print_line,
    readable_images,
    summary_line,
)

__all__ = ["add_parser", "explain_images", "run"]
DEFAULT_OUTPUT_DIR = "moxi-output"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(
        subparsers, "explain", run,
        help="explain images with one method (heatmap + JSON per image)",
        description="Explain images with MoXI (or a baseline). For each image writes DIR/<image>/explanation.json "
                    "and DIR/<image>/heatmap.png, all of them as a dataset (DIR/data/, README.md), and prints a "
                    "one-line summary. Without --model/--image it explains the sample digits of the embedded "
                    "default model.",
    )
    parser.add_argument("--method", choices=METHOD_NAMES, default="moxi", help="default: moxi")
    parser.add_argument("--curve", choices=CURVES, default="insertion",
                        help="insertion: patches needed to reach the label; deletion: patches whose removal "
                             "changes the prediction (default: insertion)")
    add_model_flags(parser, "the output folder: one folder per image plus the dataset files; a previous "
                            "moxi explain output there is replaced", DEFAULT_OUTPUT_DIR)
    parser.add_argument("--overwrite", action="store_true",
                        help="clear --output-dir even when it holds something other than a moxi explain output")
    add_method_option_flags(parser)
    parser.add_argument("--compare", action="store_true",
                        help="also run every method (or --methods) and write DIR/<image>/compare.png")
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                        help=f"with --compare: the methods to compare (default: all of {', '.join(METHOD_NAMES)})")
    add_interaction_flags(parser, switch_help="also write DIR/<image>/interactions.png and the gains/interactions "
                                              "fields: which of the first K players worked together (MoXI: the "
                                              "self/interaction split of each step's gain)")
    return parser


def explain_images(explainer, images: Sequence[InputImage], names: Sequence[str], args: argparse.Namespace,
                   options: dict, staging: Path, output_dir: Path, finished: list) -> None:
    """Explain ``images`` in batches; write each image's JSON and heatmap, print its summary and append its
    explanation to ``finished`` once all of its files are written."""
    from ..artifacts import public_name
    from ..fileio import write_json
    from ..progress import WorkBar, slow_run_line

    interaction_top = args.interaction_top or DEFAULT_INTERACTION_TOP
    cost = explainer.cost([args.method], [args.curve], options={args.method: options},
                          interactions=args.interactions, interaction_top=interaction_top)
    slow = None if args.quiet else slow_run_line("moxi explain", explainer, cost, len(images),
                                                 options if args.method == "moxi" else None, early_stop=True)
    if slow:
        print(slow, file=sys.stderr)
    with WorkBar(explainer.token_forwards(cost, len(images)), f"explain ({args.method})", disable=args.quiet) as bar:
        bar.note(f"0/{len(images)} images")
        for start, chunk in batches(list(images), args.batch_size):
            labels = None if args.label is None else [args.label] * len(chunk)
            batch = explainer.explain_methods(load_images(chunk), [args.method], [args.curve], labels,
                                              options={args.method: options}, interactions=args.interactions,
                                              interaction_top=interaction_top, on_chunk=bar)[(args.method, args.curve)]
            for offset, explanation in enumerate(batch):
                image, name = chunk[offset], names[start + offset]
                explanation.image = image.name  # relative to what was given: nothing of the file system
                explanation.model = public_name(explanation.model)
                write_json(staging / name / "explanation.json", explanation.to_dict())
                explanation.plot(staging / name / "heatmap.png")
                if args.interactions:
                    explanation.plot_interactions(staging / name / "interactions.png")
                finished.append(explanation)  # all its files are written
                print_line(args.quiet, summary_line(image.file_name, explanation, f"{output_dir / name}{os.sep}"))
            bar.note(f"{start + len(chunk)}/{len(images)} images")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import prepare_output_dir, save_explanations
    from ..methods import get_method

    options = method_options(args.method, args, strict=True)
    get_method(args.method, **options)  # bad option values fail here, before the model loads
    if args.methods and not args.compare:
        raise MoXIError("--methods only applies with --compare (or use `moxi compare`)")
    if args.interaction_top is not None and not args.interactions:
        raise MoXIError("--interaction-top only applies with --interactions")
    output_dir = Path(args.output_dir)
    images, bad = readable_images(args)  # before loading the model
    output = prepare_output_dir(output_dir, "explain", overwrite=args.overwrite, inputs=local_paths(images))
    explainer = load_explainer(args)
    names = output_names(images)
    explanations: list = []
    compared: list = []
    stopped = False
    try:
        with output.staged() as staging:
            try:
                explain_images(explainer, images, names, args, options, staging, output_dir, explanations)
                if args.compare:
                    from .compare import compare_images

                    compare_images(explainer, images, names, args, args.methods or list(METHOD_NAMES),
                                   explicit=bool(args.methods), folder=staging, finished=compared)
            except KeyboardInterrupt:
                if not explanations:
                    raise
                stopped = True
                _drop_unfinished(staging, names, len(explanations), len(compared) if args.compare else None)
            config = {"command": "moxi explain", "dtype": args.dtype, "device": args.device,
                      "method_options": {args.method: options} if options else {},
                      **({"interaction_top": args.interaction_top or DEFAULT_INTERACTION_TOP}
                         if args.interactions else {})}
            if stopped:
                config["interrupted"] = {"images": len(explanations), "of": len(images),
                                         **({"compared": len(compared)} if args.compare else {})}
            pictures = [(index, e.image, e.display_image) for index, e in enumerate(explanations)
                        if e.display_image is not None]
            save_explanations(staging, explanations, model=explainer.name, label_names=explainer.label_names(),
                              config=config, dataset_indices=list(range(len(explanations))),
                              pictures=pictures or None)
    except KeyboardInterrupt:
        print(interrupted_note("explain", 0, len(images), output_dir), file=sys.stderr)
        return INTERRUPTED
    if stopped:
        print(interrupted_note("explain", len(explanations), len(images), output_dir,
                               len(compared) if args.compare else None), file=sys.stderr)
        return INTERRUPTED
    files = ("explanation.json, heatmap.png" + (", interactions.png" if args.interactions else "")
             + (", compare.png" if args.compare else ""))
    print_line(args.quiet, f"Explained {len(explanations)} image(s) with {args.method} ({args.curve}) on "
                           f"{model_label(args, explainer)}: per image {output_dir}{os.sep}<image>{os.sep}{{{files}}}")
    print_line(args.quiet, f"All explanations as a dataset (parquet + card): {output_dir}{os.sep}")
    return finish(bad, len(bad) + len(images))


def _drop_unfinished(staging: Path, names: Sequence[str], explained: int, compared: int | None) -> None:
    """Remove what the interrupted image wrote: its folder (not explained yet) or its comparison files."""
    from .compare import COMPARE_FILES

    for name in names[explained:]:
        shutil.rmtree(staging / name, ignore_errors=True)
    for name in names[compared:explained] if compared is not None else ():
        for file in COMPARE_FILES:
            (staging / name / file).unlink(missing_ok=True)
