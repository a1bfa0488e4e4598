"""``moxi explain``: explain images with one method; write ``DIR/<image>/explanation.json`` and ``heatmap.png``.

Without ``--model``/``--image`` it explains the sample digits of the embedded default model.
The helpers here (model/image flags, loading, output folders) are shared with ``moxi compare``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..defaults import SAMPLE_SUFFIXES, default_model_path, sample_images
from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation
from ..images import load_image
from ..methods import CURVES, METHODS

__all__ = [
    "add_parser", "run", "add_model_flags", "add_method_option_flags", "load_explainer", "check_images",
    "resolve_images", "load_images", "output_names", "method_options", "batches", "describe_class", "players_text",
    "save_dataset_layout", "model_label",
]

MASKINGS = ("auto", "token", "pixel")
REWARD_CHOICES = ("log-odds", "log-prob", "logit")
DTYPE_CHOICES = ("float32", "bfloat16")
DEVICE_CHOICES = ("cpu", "cuda")
DEFAULT_OUTPUT_DIR = "moxi-output"
DEFAULT_BATCH_SIZE = 8


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``explain`` and ``compare``: model, images, label, removal, output, batching."""
    group = parser.add_argument_group("model and images")
    group.add_argument("--model", metavar="PATH_OR_ID",
                       help="HF image classifier: local folder or Hub id (default: the embedded moxi-vit-mnist)")
    group.add_argument("--image", nargs="+", metavar="PATH", action="extend",
                       help="image file(s) or folder(s) of images to explain (default: the model folder's samples/)")
    group.add_argument("--label", type=int, metavar="INT",
                       help="class index to explain for every image (default: the model's prediction)")
    group.add_argument("--masking", choices=MASKINGS, default="auto",
                       help="token removal (ViT family) or pixel masking (any classifier); auto picks (default: auto)")
    group.add_argument("--reward", choices=REWARD_CHOICES, default="log-odds",
                       help="value of a coalition from the label's logit (default: log-odds)")
    group.add_argument("--players-grid", type=positive_int, metavar="G",
                       help="G×G players, each a block of patches; G must divide the patch grid (default: one per patch)")
    group.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32", help="model dtype (default: float32)")
    group.add_argument("--device", choices=DEVICE_CHOICES, default="cpu", help="default: cpu")
    group.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                       help=f"where results go, one folder per image (default: {DEFAULT_OUTPUT_DIR})")
    group.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                       help=f"images explained together, sharing forward passes (default: {DEFAULT_BATCH_SIZE})")


def add_method_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method options")
    group.add_argument("--num-samples", type=positive_int, metavar="N",
                       help="full-shapley: Monte Carlo samples per patch (default: 200)")
    group.add_argument("--seed", type=int, metavar="S", help="full-shapley: random seed (default: 0)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import add_common_flags

    parser = subparsers.add_parser(
        "explain",
        help="explain images with one method (heatmap + JSON per image)",
        description="Explain images with MoXI (or a baseline). For each image writes DIR/<image>/explanation.json "
                    "and DIR/<image>/heatmap.png and prints a one-line summary. Without --model/--image it "
                    "explains the sample digits of the embedded default model.",
    )
    parser.add_argument("--method", choices=tuple(METHODS), default="moxi", help="default: moxi")
    parser.add_argument("--curve", choices=CURVES, default="insertion",
                        help="insertion: patches needed to reach the label; deletion: patches whose removal "
                             "changes the prediction (default: insertion)")
    add_model_flags(parser)
    add_method_option_flags(parser)
    parser.add_argument("--early-stop", action="store_true",
                        help="moxi: stop once the label is reached (insertion) / lost (deletion); "
                             "the order then holds only the patches needed")
    parser.add_argument("--compare", action="store_true",
                        help="also run every method (or --methods) and write DIR/<image>/compare.png")
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), metavar="METHOD",
                        help=f"with --compare: the methods to compare (default: all of {', '.join(METHODS)})")
    add_common_flags(parser)
    parser.set_defaults(run=run)
    return parser


# -- shared helpers ------------------------------------------------------------------------------


def load_explainer(args: argparse.Namespace) -> Explainer:
    """The Explainer for ``--model`` (default: the embedded model) with the removal/reward/grid flags."""
    model = args.model if args.model is not None else os.fspath(default_model_path())
    try:
        return Explainer.from_pretrained(
            model, masking=args.masking, reward=args.reward, players_grid=args.players_grid,
            dtype=args.dtype, device=args.device,
        )
    except MoXIError as error:  # speak in flags, not keyword arguments
        raise MoXIError(str(error).replace("masking='pixel'", "--masking pixel")
                        .replace("use players_grid", "use --players-grid")) from None


def check_images(args: argparse.Namespace) -> list[Path]:
    """The ``--image`` paths (a folder: its image files), each checked to be a readable image."""
    paths: list[Path] = []
    for image in args.image or []:
        path = Path(image)
        if path.is_dir():  # a folder stands for the image files in it
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
            if not found:
                raise MoXIError(f"image folder {str(path)!r} has no image files ({', '.join(SAMPLE_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(path)
    load_images(paths)
    return paths


def resolve_images(args: argparse.Namespace) -> list[Path]:
    """``--image`` paths, or the ``samples/`` of the model folder when none are given."""
    if args.image:
        return check_images(args)
    model_dir = Path(args.model) if args.model is not None else default_model_path()
    found = sample_images(model_dir) if model_dir.is_dir() else []
    if not found:
        raise MoXIError(f"no --image given and the model {args.model!r} has no samples/ folder of images; "
                        "pass --image PATH")
    return found


def output_names(paths: Sequence[Path]) -> list[str]:
    """One folder name per image: its file stem, with ``-2``, ``-3``, ... added where stems repeat."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        stem = path.stem or "image"
        name, count = stem, 1
        while name in taken:
            count += 1
            name = f"{stem}-{count}"
        taken.add(name)
        names.append(name)
    return names


def method_options(method: str, args: argparse.Namespace, strict: bool = True) -> dict:
    """Keyword options of ``method`` from the flags; ``strict``: an option meant for another method is an error."""
    options: dict = {}
    if method == "full-shapley":
        if args.num_samples is not None:
            options["num_samples"] = args.num_samples
        if args.seed is not None:
            options["seed"] = args.seed
    elif strict:
        for flag, value in (("--num-samples", args.num_samples), ("--seed", args.seed)):
            if value is not None:
                raise MoXIError(f"{flag} only applies to --method full-shapley, not {method}")
    if getattr(args, "early_stop", False):
        if method == "moxi":
            options["early_stop"] = True
        elif strict:
            raise MoXIError(f"--early-stop only applies to --method moxi, not {method}")
    return options


def batches(items: Sequence, size: int) -> Iterator[tuple[int, Sequence]]:
    """(start index, slice) over ``items`` in chunks of ``size``."""
    for start in range(0, len(items), size):
        yield start, items[start: start + size]


def load_images(paths: Sequence[Path]):
    """RGB PIL images, read up front so a missing or corrupt file fails before any work is done."""
    return [load_image(path) for path in paths]


def describe_class(index: int | None, name: str | None) -> str:
    """``7`` when the class name is the index itself, else ``281 ("tabby cat")``."""
    if index is None:
        return "?"
    return str(index) if name is None or name == str(index) else f'{index} ("{name}")'


def players_text(explanation: Explanation) -> str:
    """'49 patches' or '16 players (2x2 patches each)'."""
    rows, cols = explanation.grid
    n_players = rows * cols
    if explanation.patch_grid is None or tuple(explanation.patch_grid) == tuple(explanation.grid):
        return f"{n_players} patches"
    group = (explanation.patch_grid[0] // rows, explanation.patch_grid[1] // cols)
    return f"{n_players} players ({group[0]}x{group[1]} patches each)"


def _reached(explanation: Explanation) -> bool:
    predictions = explanation.curve_predictions or []
    k = explanation.patches_needed
    if k >= len(predictions):
        return False
    hit = predictions[k] == explanation.label
    return hit if explanation.curve == "insertion" else not hit


def summary_line(name: str, explanation: Explanation, where: str, predicted_name: str | None = None) -> str:
    """One line per image for the terminal."""
    predicted = describe_class(explanation.predicted, predicted_name)
    label = describe_class(explanation.label, explanation.label_name)
    total = players_text(explanation)
    if _reached(explanation):
        if explanation.curve == "insertion":
            needed = f"{explanation.patches_needed} of {total} needed to predict it"
        else:
            needed = f"{explanation.patches_needed} of {total} removed to change the prediction"
    else:
        needed = ("never predicted it, even with all " if explanation.curve == "insertion"
                  else "prediction survives removing all ") + total
    return (f"{name}: predicted {predicted}; explained {label} with {explanation.method} "
            f"({explanation.curve}): {needed} -> {where}")


def save_dataset_layout(output_dir: Path, explanations: list[Explanation], explainer: Explainer,
                        config: dict | None = None) -> Path | None:
    """Also write ``output_dir`` as an HF dataset repo (parquet rows, curves, card) when ``moxi_hf.artifacts`` can."""
    from .. import artifacts

    save = getattr(artifacts, "save_explanations", None)
    if save is None or not explanations:
        return None
    label_names = [explainer.label_name(i) or str(i) for i in range(explainer.num_labels)]
    result = save(output_dir, explanations, model=explainer.name, label_names=label_names, config=config)
    return Path(result) if result is not None else output_dir


def model_label(args: argparse.Namespace, explainer: Explainer) -> str:
    """How to name the model to the user: the embedded default by name, others as given."""
    if args.model is not None:
        return str(args.model)
    relative = os.path.relpath(explainer.name)
    return f"the embedded default model ({explainer.name if relative.startswith('..') else relative})"


def _print(quiet: bool, text: str) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)


# -- the command -------------------------------------------------------------------------------


def explain_images(explainer: Explainer, paths: Sequence[Path], names: Sequence[str], args: argparse.Namespace,
                   options: dict) -> list[Explanation]:
    """Explain ``paths`` in batches; write each image's JSON and heatmap and print its summary."""
    from tqdm.auto import tqdm

    from ..artifacts import write_json

    output_dir = Path(args.output_dir)
    label = args.label
    explanations: list[Explanation] = []
    with tqdm(total=len(paths), desc=f"explain ({args.method})", unit="image", disable=args.quiet) as bar:
        for start, chunk in batches(list(paths), args.batch_size):
            images = load_images(chunk)
            labels = None if label is None else [label] * len(chunk)
            batch = explainer.explain_batch(images, args.method, args.curve, labels, progress=not args.quiet, **options)
            for offset, explanation in enumerate(batch):
                path, name = chunk[offset], names[start + offset]
                explanation.image = os.fspath(path)
                folder = output_dir / name
                folder.mkdir(parents=True, exist_ok=True)
                write_json(folder / "explanation.json", explanation.to_dict())
                explanation.plot(folder / "heatmap.png")
                predicted_name = explainer.label_name(explanation.predicted)
                _print(args.quiet, summary_line(path.name, explanation, f"{folder}{os.sep}", predicted_name))
                explanations.append(explanation)
            bar.update(len(chunk))
    return explanations


def run(args: argparse.Namespace) -> int:
    options = method_options(args.method, args, strict=True)
    if args.methods and not args.compare:
        raise MoXIError("--methods only applies with --compare (or use `moxi compare`)")
    check_images(args)  # fail fast on missing or unreadable files, before loading the model
    explainer = load_explainer(args)
    paths = resolve_images(args)
    names = output_names(paths)
    output_dir = Path(args.output_dir)
    explanations = explain_images(explainer, paths, names, args, options)
    config = {"command": "moxi explain", "method_options": options, "dtype": args.dtype, "device": args.device}
    dataset_dir = save_dataset_layout(output_dir, explanations, explainer, config)
    compared = False
    if args.compare:
        from .compare import compare_images

        compare_images(explainer, paths, names, args, args.methods or list(METHODS), explicit=bool(args.methods))
        compared = True
    files = "explanation.json, heatmap.png" + (", compare.png" if compared else "")
    _print(args.quiet, f"Explained {len(explanations)} image(s) with {args.method} ({args.curve}) on "
                       f"{model_label(args, explainer)}: per image {output_dir}{os.sep}<image>{os.sep}{{{files}}}")
    if dataset_dir is not None:
        _print(args.quiet, f"All explanations as a dataset (parquet + card): {dataset_dir}{os.sep}")
    return 0
