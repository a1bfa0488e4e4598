"""``moxi evaluate``: insertion/deletion curves and AUC of explanation methods over a ``datasets`` split.

Runs under plain ``python``/``moxi`` and under ``accelerate launch`` (every process runs this
command; the main process writes the output folder). See :mod:`moxi_hf.evaluation`.
"""

from __future__ import annotations

import argparse
import sys

from ..options import (
    CURVES,
    DEFAULT_DATASET,
    DEFAULT_NUM_IMAGES,
    DTYPES,
    MASKINGS,
    METHOD_NAMES,
    METHOD_OPTIONS,
    REWARD_NAMES,
)
from .common import add_common_flags, add_method_option_flags, positive_int
from .explain import interaction_top

__all__ = ["add_parser", "config_from_args", "run"]

DEFAULT_OUTPUT_DIR = "moxi-evaluation"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="insertion/deletion curves and AUC of the methods over a dataset split (accelerate-ready)",
        description=(
            "Evaluate explanation methods with insertion/deletion curves (MoXI paper protocol): shuffle the "
            "split with --seed, keep the first --num-images images the model classifies correctly (or the "
            "first --per-class K of every class), explain each with every method, and measure the accuracy "
            "and mean p(label) after k = 0..N players were inserted/deleted. Run it with `accelerate launch "
            "-m moxi_hf evaluate ...` (or scripts/evaluate.py) to share the images between processes. "
            "Finished images are kept: rerunning the same command resumes."
        ),
    )
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
    data.add_argument("--seed", type=int, default=0,
                      help="shuffle seed, also full-shapley's sampling seed (default: 0)")

    model = parser.add_argument_group("model and methods")
    model.add_argument("--model", metavar="PATH_OR_ID",
                       help="HF image classifier: local folder or Hub id (default: the embedded moxi-vit-mnist)")
    model.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="METHOD",
                       help=f"methods to evaluate (default: all the model supports: {', '.join(METHOD_NAMES)})")
    model.add_argument("--curves", nargs="+", choices=CURVES, default=list(CURVES), metavar="CURVE",
                       help="insertion and/or deletion (default: both)")
    model.add_argument("--masking", choices=MASKINGS, default="auto",
                       help="token removal (ViT family) or pixel masking (any classifier) (default: auto)")
    model.add_argument("--reward", choices=REWARD_NAMES, default="log-odds",
                       help="value of a coalition (default: log-odds)")
    model.add_argument("--players-grid", type=positive_int, metavar="G",
                       help="G×G players, each a block of patches (default: one player per patch)")
    model.add_argument("--dtype", choices=DTYPES, default="float32", help="default: float32")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: each process's accelerator as Accelerate assigns it, else CPU (default: auto)")
    model.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                       help="images explained together, sharing forward passes (default: 8)")

    add_method_option_flags(parser, curve_safe_only=True, defaults=True, skip=("seed",))  # --seed: above
    model.add_argument("--interactions", action="store_true",
                       help="MoXI rows also store the gain split and the interaction map of the first K players; "
                            "the summary gives the share of the gain of the patches needed that came from "
                            "interaction")
    model.add_argument("--interaction-top", type=interaction_top, default=10, metavar="K",
                       help="with --interactions: players in the interaction map (default: 10; at least 2)")

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
    add_common_flags(parser)
    parser.set_defaults(run=run)
    return parser


def config_from_args(args: argparse.Namespace):
    from ..evaluation import EvaluationConfig

    declared = {option.name: getattr(args, option.name) for options in METHOD_OPTIONS.values() for option in options
                if option.cli and option.curve_safe and hasattr(args, option.name)}
    return EvaluationConfig(
        **declared,
        output_dir=args.output_dir,
        model=args.model,
        dataset=args.dataset,
        split=args.split,
        streaming=args.streaming,
        shuffle_buffer=args.shuffle_buffer,
        image_column=args.image_column,
        label_column=args.label_column,
        methods=args.methods,
        curves=list(dict.fromkeys(args.curves)),
        num_images=args.num_images,
        per_class=args.per_class,
        masking=args.masking,
        reward=args.reward,
        players_grid=args.players_grid,
        dtype=args.dtype,
        device=None if args.device == "auto" else args.device,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        quiet=args.quiet,
        embed_images=args.embed_images,
        push_to_hub=args.push_to_hub,
        hub_private=args.hub_private,
        interactions=args.interactions,
        interaction_top=args.interaction_top,
    )


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from ..evaluation import evaluate, format_summary

    curves = evaluate(config_from_args(args))
    if not args.quiet and PartialState().is_main_process and not args.push_to_hub:  # a push printed them already
        print(format_summary(curves))
        print(f"results in {args.output_dir}", file=sys.stderr)
    return 0
