"""``moxi explain``: explain images with one method; an artifact folder plus ``<image>/explanation.json``, ``heatmap.png``.

Without ``--model``/``--image`` it explains the sample digits of the embedded default model. The
output folder is its own: a previous ``moxi explain`` output there is replaced as a whole, any
other non-empty folder is refused (``--overwrite`` clears it). The run is written to a hidden
sibling folder first and moved into place at the end, so a folder never mixes two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import MoXIError
from ..options import CURVES, DEFAULT_INTERACTION_TOP, METHOD_NAMES
from .common import (
    InputImage,
    add_method_option_flags,
    add_model_flags,
    add_sub_command,
    batches,
    finish,
    interaction_top,
    load_explainer,
    load_images,
    method_options,
    model_label,
    output_names,
    print_line,
    readable_images,
    remove_tree,
    summary_line,
)

__all__ = ["add_interaction_flags", "add_parser", "check_output_dir", "output_names", "run", "staged_output"]

DEFAULT_OUTPUT_DIR = "moxi-output"


def add_interaction_flags(parser: argparse.ArgumentParser, switch: bool = True) -> None:
    """``--interaction-top K`` (and ``--interactions`` when ``switch``)."""
    if switch:
        parser.add_argument("--interactions", action="store_true",
                            help="also write DIR/<image>/interactions.png and the gains/interactions fields: "
                                 "which of the first K players worked together (MoXI: the self/interaction "
                                 "split of each step's gain)")
    parser.add_argument("--interaction-top", type=interaction_top, metavar="K",
                        help=f"players of the order in the interaction map (default: {DEFAULT_INTERACTION_TOP}; "
                             "at least 2)")


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
    add_interaction_flags(parser)
    return parser


def _is_output_of(folder: Path, command: str) -> bool:
    config = folder / "config.json"
    try:
        return json.loads(config.read_text()).get("kind") == command
    except (OSError, ValueError, AttributeError):
        return False


def check_output_dir(output_dir: Path, overwrite: bool, command: str = "explain") -> str | None:
    """Refuse a folder that is not ``moxi <command>``'s own (its config.json ``kind``); returns the stderr note
    to print, if any."""
    if not output_dir.exists():
        return None
    if not output_dir.is_dir():
        raise MoXIError(f"output dir {str(output_dir)!r} is a file")
    if not any(output_dir.iterdir()):
        return None
    if _is_output_of(output_dir, command):
        return f"moxi {command}: replacing the previous moxi {command} output in {output_dir}"
    if overwrite:
        return f"moxi {command}: --overwrite: clearing {output_dir}"
    raise MoXIError(f"output dir {str(output_dir)!r} is not empty and is not a moxi {command} output; use another "
                    "--output-dir, or --overwrite to delete what it holds")


def _staging_dir(output_dir: Path) -> Path:
    staging = output_dir.parent / f".{output_dir.name}.moxi-partial-{os.getpid()}"
    remove_tree(staging)
    return staging


def _move_into_place(staging: Path, output_dir: Path) -> None:
    """Replace what ``output_dir`` holds by the contents of ``staging`` (the old run goes once the new one is complete).

    The folder itself stays (it may be the working directory); its entries are swapped.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    trash = output_dir.parent / f".{output_dir.name}.moxi-old-{os.getpid()}"
    remove_tree(trash)
    trash.mkdir()
    for entry in list(output_dir.iterdir()):
        os.replace(entry, trash / entry.name)
    for entry in list(staging.iterdir()):
        os.replace(entry, output_dir / entry.name)
    remove_tree(trash)


@contextmanager
def staged_output(output_dir: Path, note: str | None) -> Iterator[Path]:
    """A hidden sibling folder to write the run into; moved into ``output_dir`` when the block ends without error.

    ``note``: what :func:`check_output_dir` returned, printed to stderr just before the move.
    """
    staging = _staging_dir(output_dir.resolve())  # resolved: "." has no name to put a sibling beside
    try:
        yield staging
        if note:
            print(note, file=sys.stderr)
        _move_into_place(staging, output_dir.resolve())
    finally:
        remove_tree(staging)


def explain_images(explainer, images: Sequence[InputImage], names: Sequence[str], args: argparse.Namespace,
                   options: dict, staging: Path, output_dir: Path) -> list:
    """Explain ``images`` in batches; write each image's JSON and heatmap and print its summary."""
    from tqdm.auto import tqdm

    from ..artifacts import public_name
    from ..fileio import write_json

    explanations = []
    with tqdm(total=len(images), desc=f"explain ({args.method})", unit="image", disable=args.quiet) as bar:
        for start, chunk in batches(list(images), args.batch_size):
            labels = None if args.label is None else [args.label] * len(chunk)
            batch = explainer.explain_batch(load_images(chunk), args.method, args.curve, labels,
                                            progress=not args.quiet, interactions=args.interactions,
                                            interaction_top=args.interaction_top or DEFAULT_INTERACTION_TOP,
                                            **options)
            for offset, explanation in enumerate(batch):
                image, name = chunk[offset], names[start + offset]
                explanation.image = image.name  # relative to what was given: nothing of the file system
                explanation.model = public_name(explanation.model)
                write_json(staging / name / "explanation.json", explanation.to_dict())
                explanation.plot(staging / name / "heatmap.png")
                if args.interactions:
                    explanation.plot_interactions(staging / name / "interactions.png")
                predicted_name = explainer.label_name(explanation.predicted)
                print_line(args.quiet, summary_line(image.file_name, explanation, f"{output_dir / name}{os.sep}",
                                                    predicted_name))
                explanations.append(explanation)
            bar.update(len(chunk))
    return explanations


def run(args: argparse.Namespace) -> int:
    from ..artifacts import save_explanations

    options = method_options(args.method, args, strict=True)
    if args.methods and not args.compare:
        raise MoXIError("--methods only applies with --compare (or use `moxi compare`)")
    if args.interaction_top is not None and not args.interactions:
        raise MoXIError("--interaction-top only applies with --interactions")
    output_dir = Path(args.output_dir)
    note = check_output_dir(output_dir, args.overwrite)
    images, bad = readable_images(args)  # before loading the model
    explainer = load_explainer(args)
    names = output_names(images)
    with staged_output(output_dir, note) as staging:
        explanations = explain_images(explainer, images, names, args, options, staging, output_dir)
        if args.compare:
            from .compare import compare_images

            compare_images(explainer, images, names, args, args.methods or list(METHOD_NAMES),
                           explicit=bool(args.methods), folder=staging)
        label_names = [explainer.label_name(i) or str(i) for i in range(explainer.num_labels)]
        pictures = [(index, e.image, e.display_image) for index, e in enumerate(explanations)
                    if e.display_image is not None]
        save_explanations(staging, explanations, model=explainer.name, label_names=label_names,
                          config={"command": "moxi explain", "dtype": args.dtype, "device": args.device,
                                  "method_options": {args.method: options} if options else {},
                                  **({"interaction_top": args.interaction_top or DEFAULT_INTERACTION_TOP}
                                     if args.interactions else {})},
                          dataset_indices=list(range(len(explanations))), pictures=pictures or None)
    files = ("explanation.json, heatmap.png" + (", interactions.png" if args.interactions else "")
             + (", compare.png" if args.compare else ""))
    print_line(args.quiet, f"Explained {len(explanations)} image(s) with {args.method} ({args.curve}) on "
                           f"{model_label(args, explainer)}: per image {output_dir}{os.sep}<image>{os.sep}{{{files}}}")
    print_line(args.quiet, f"All explanations as a dataset (parquet + card): {output_dir}{os.sep}")
    return finish(bad, len(bad) + len(images))
