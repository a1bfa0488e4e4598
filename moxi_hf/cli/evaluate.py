"""``moxi evaluate``: insertion/deletion curves and AUC of explanation methods over a ``datasets`` split.

Runs under plain ``python``/``moxi`` and under ``accelerate launch`` (every process runs this
command; the main process writes the output folder). See :mod:`moxi_hf.evaluation`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import MoXIError
from ..options import CURVES, DEFAULT_DATASET, DEFAULT_NUM_IMAGES, METHOD_NAMES, METHOD_OPTIONS
from .common import (
    DEVICE_CHOICES,
    add_batch_size_flag,
    add_interaction_flags,
    add_method_option_flags,
    add_removal_flags,
    add_sub_command,
    add_trust_flag,
    add_zero_shot_flags,
    positive_int,
    zero_shot_arguments,
)

__all__ = ["add_parser", "config_from_args", "run"]

DEFAULT_OUTPUT_DIR = "moxi-evaluation"


HELP = "insertion/deletion curves and AUC of the methods over a dataset split (accelerate-ready)"
DESCRIPTION = """\
Evaluate explanation methods with insertion/deletion curves (MoXI paper protocol): shuffle the split with
--seed, keep the first --num-images images the model classifies correctly (or the first --per-class K of every
class), explain each with every method, and measure the accuracy and mean p(label) after k = 0..N players were
inserted/deleted. Run it with `accelerate launch -m moxi_hf evaluate ...` (or scripts/evaluate.py) to share
the images between processes. Finished images are kept: rerunning the same command resumes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=DEFAULT_DATASET, metavar="ID_OR_DIR",
                      help=f"Hub dataset id or a local folder of class sub-folders (default: {DEFAULT_DATASET}, "
                           "gated: log in with `hf auth login` or set HF_TOKEN)")
    data.add_argument("--split", help="dataset split (default: validation; a local folder with one split: that one)")
    data.add_argument("--streaming", action="store_true",
                      help="stream the split instead of downloading it (a seeded buffer shuffle)")
    data.add_argument("--shuffle-buffer", type=positive_int, default=1000, metavar="N",
                      help="with --streaming: shuffle buffer size (default: 1000)")
    data.add_argument("--image-column", default="image", help="default: image")
    data.add_argument("--label-column", default="label", help="default: label")
    count = data.add_mutually_exclusive_group()
    count.add_argument("--num-images", type=positive_int, metavar="N",
                       help=f"the first N correctly classified images (default: {DEFAULT_NUM_IMAGES})")
    count.add_argument("--per-class", type=positive_int, metavar="K",
                       help="the first K correctly classified images of every class (the paper: 1)")
    seed = next(option for option in METHOD_OPTIONS["full-shapley"] if option.name == "seed")
    data.add_argument("--seed", type=seed.type, default=seed.default,
                      help=f"shuffle seed, also full-shapley's sampling seed (default: {seed.default})")

    model = parser.add_argument_group("model and methods")
    model.add_argument("--model", metavar="PATH_OR_ID",
                       help="HF image classifier or CLIP/SigLIP zero-shot model: local folder, Hub id or a shipped "
                            "model's name (default: the embedded moxi-vit-mnist)")
    model.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                       help=f"methods to evaluate (default: all the model supports: {', '.join(METHOD_NAMES)})")
    model.add_argument("--curves", nargs="+", choices=CURVES, default=list(CURVES), metavar="CURVE",
                       help="insertion and/or deletion (default: both)")
    add_removal_flags(model, device_choices=("auto", *DEVICE_CHOICES), device_default="auto",
                      device_help="auto: each process's accelerator as Accelerate assigns it, else CPU (default: auto)")
    add_zero_shot_flags(model, evaluate=True)
    add_batch_size_flag(model)
    add_trust_flag(model)

    add_method_option_flags(parser, curve_safe_only=True, defaults=True, skip=("seed",))  # --seed: above
    add_interaction_flags(model, switch_help="MoXI rows also store the gain split and the interaction map of the "
                                             "first K players; the summary gives the share of the gain of the "
                                             "patches needed that came from interaction")

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                        help=f"result folder, an HF dataset folder (default: {DEFAULT_OUTPUT_DIR}); "
                             "rerunning into it resumes")
    output.add_argument("--overwrite", action="store_true",
                        help="discard the results already in --output-dir and start over")
    output.add_argument("--push-to-hub", metavar="USER/NAME",
                        help="when finished, upload the folder to this Hub dataset repo (as `moxi push`; token "
                             "from HF_TOKEN or `hf auth login`, endpoint from HF_ENDPOINT)")
    output.add_argument("--embed-images", action="store_true",
                        help="also store the pictures of a Hub dataset in the output (local datasets: always)")
    output.add_argument("--hub-private", action="store_true", help="with --push-to-hub: create the repo as private")


def config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from ..evaluation import EvaluationConfig

    if args.interaction_top is not None and not args.interactions:
        raise MoXIError("--interaction-top only applies with --interactions")
    # every flag is named like its config field (a flag not given keeps the field's default); two need converting
    given = {field.name: getattr(args, field.name) for field in fields(EvaluationConfig)
             if getattr(args, field.name, None) is not None}
    return EvaluationConfig(**{**given, "curves": list(dict.fromkeys(args.curves)), **zero_shot_arguments(args),
                               "device": None if args.device == "auto" else args.device})


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from ..evaluation import evaluate, format_summary

    curves = evaluate(config_from_args(args))
    if not args.quiet and PartialState().is_main_process and not args.push_to_hub:  # a push printed them already
        from ..artifacts import CONFIG_FILE
        from ..fileio import read_json

        print(format_summary(curves, read_json(Path(args.output_dir) / CONFIG_FILE)))
        print(f"results in {args.output_dir}", file=sys.stderr)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(subparsers, "evaluate", run, HELP, DESCRIPTION)
    add_arguments(parser)
    return parser
