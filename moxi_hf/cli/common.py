"""Helpers shared by the sub-commands: flags (derived from the library's own names and method
declarations), the explainer, the input images, output folders and the terminal summary.

Imports nothing heavy at module level: ``moxi --help`` and usage errors never import torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..defaults import default_model_path, model_folder, sample_images
from ..errors import MoXIError
from ..labels import template_value
from ..options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INTERACTION_TOP,
    DEFAULT_REWARD,
    DTYPES,
    MASKINGS,
    METHOD_OPTIONS,
    REWARD_NAMES,
    Option,
    with_budget_resolved,
)
from ..urls import is_url, public_url

__all__ = [
    "INTERRUPTED",
    "InputImage",
    "is_url",
    "add_batch_size_flag",
    "add_common_flags",
    "add_interaction_flags",
    "add_method_option_flags",
    "add_model_flags",
    "add_removal_flags",
    "add_sub_command",
    "add_threads_flag",
    "add_trust_flag",
    "add_zero_shot_flags",
    "batches",
    "finish",
    "interaction_top",
    "interrupted_note",
    "load_explainer",
    "load_images",
    "local_paths",
    "method_options",
    "model_label",
    "output_names",
    "positive_int",
    "print_line",
    "read_images",
    "readable_images",
    "resolve_images",
    "summary_line",
    "target_label",
    "url_file_name",
    "zero_shot_arguments",
]

DEVICE_CHOICES = ("cpu", "cuda")
#: exit code of a run stopped by Ctrl+C (128 + SIGINT)
INTERRUPTED = 130


def int_at_least(minimum: int, expected: str | None = None):
    """The argparse type of an integer ≥ ``minimum``: a usage error (exit 2) saying ``expected`` otherwise."""
    expected = expected or ("a positive integer" if minimum == 1 else f"an integer of at least {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


#: argparse type: an integer ≥ 1
positive_int = int_at_least(1)


#: argparse type of ``--interaction-top``: an integer K ≥ 2 (a pair needs two players)
interaction_top = int_at_least(2, "an integer of at least 2 (a pair needs two players)")


def add_threads_flag(parser: argparse.ArgumentParser, dest: str = "threads") -> None:
    """``--threads N``: torch's CPU threads (default: torch's own count, waiting passively; see moxi_hf.threads)."""
    parser.add_argument("--threads", dest=dest, type=positive_int, metavar="N",
                        help="CPU threads for torch (default: $MOXI_THREADS, else one per core; idle threads sleep "
                             "instead of spinning, so another busy process does not slow moxi down)")


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet``/``--debug``/``--threads`` accepted after the sub-command too."""
    parser.add_argument("--quiet", dest="sub_quiet", action="store_true", help="no progress bars or summaries")
    parser.add_argument("--debug", dest="sub_debug", action="store_true", help="show full tracebacks on errors")
    add_threads_flag(parser, dest="sub_threads")


def add_sub_command(subparsers, name: str, run, help: str, description: str) -> argparse.ArgumentParser:
    """A sub-command's parser: ``moxi NAME`` runs ``run(args) -> int``; ``--quiet``/``--debug`` accepted after it."""
    parser = subparsers.add_parser(name, help=help, description=description)
    add_common_flags(parser)
    parser.set_defaults(run=run)
    return parser


def add_removal_flags(group, device_choices: Sequence[str] = DEVICE_CHOICES, device_default: str = "cpu",
                      device_help: str = "default: cpu") -> None:
    """``--masking``, ``--reward``, ``--players-grid``, ``--dtype``, ``--device``: how the model is run and masked."""
    group.add_argument("--masking", choices=MASKINGS, default="auto",
                       help="token removal (ViT family) or pixel masking (any classifier); auto picks (default: auto)")
    group.add_argument("--reward", choices=REWARD_NAMES, default=DEFAULT_REWARD,
                       help=f"value of a coalition from the label's logit (default: {DEFAULT_REWARD})")
    group.add_argument("--players-grid", type=positive_int, metavar="G",
                       help="G×G players, each a block of patches; G must divide the patch grid "
                            "(default: one per patch)")
    group.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype (default: float32)")
    group.add_argument("--device", choices=device_choices, default=device_default, help=device_help)


def add_zero_shot_flags(group, evaluate: bool = False) -> None:
    """``--labels`` and ``--template``: a CLIP/SigLIP model's classes, named by text."""
    default = ("the model's recorded labels when they are as many as the dataset's classes, else the dataset's "
               "class names" if evaluate else "the labels the model folder records")
    group.add_argument("--labels", nargs="+", metavar="TEXT",
                       help=f"zero-shot models: the candidate labels, e.g. --labels 'a cat' 'a dog' (default: {default})")
    group.add_argument("--template", nargs="+", metavar="TEXT",
                       help="zero-shot models: the prompt each label is put into, with {} where the label goes; "
                            "several: their text features are averaged (default: the model folder's, else "
                            "'This is a photo of {}.')")


def zero_shot_arguments(args: argparse.Namespace) -> dict:
    """``candidate_labels``/``hypothesis_template`` keyword arguments from ``--labels``/``--template``."""
    return {"candidate_labels": getattr(args, "labels", None),
            "hypothesis_template": template_value(getattr(args, "template", None))}


def target_label(text: str | None, explainer) -> int | str | None:
    """``--label`` for this model: a zero-shot model's candidate by text (or index), a classifier's class index."""
    if text is None:
        return None
    if explainer.zero_shot:
        if text in explainer.candidate_labels or not text.strip().isdigit():
            return explainer.adapter.text.index(text)
        return explainer.adapter.text.index(int(text))
    try:
        return int(text)
    except ValueError:
        raise MoXIError(f"--label must be a class index (an integer) for a classifier, got {text!r}") from None


def add_trust_flag(group) -> None:
    """``--trust-remote-code``: let a model that ships its own Python code run it (off: such a model is refused)."""
    group.add_argument("--trust-remote-code", action="store_true",
                       help="run Python code that comes with the model (its config's auto_map); only for models "
                            "whose authors you trust (default: never run it, and refuse a model that needs it)")


def add_batch_size_flag(group) -> None:
    group.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                       help=f"images explained together, sharing forward passes (default: {DEFAULT_BATCH_SIZE})")


def add_interaction_flags(parser, switch: bool = True, switch_help: str = "") -> None:
    """``--interaction-top K`` (and ``--interactions`` when ``switch``); the commands' one declaration of both."""
    if switch:
        parser.add_argument("--interactions", action="store_true", help=switch_help)
    parser.add_argument("--interaction-top", type=interaction_top, metavar="K",
                        help=f"players of the order in the interaction map (default: {DEFAULT_INTERACTION_TOP}; "
                             "at least 2)" + (", with --interactions" if switch else ""))


def add_model_flags(parser: argparse.ArgumentParser, output_help: str, default_output: str) -> None:
    """Flags shared by ``explain`` and ``compare``: model, images, label, removal, output, batching."""
    group = parser.add_argument_group("model and images")
    group.add_argument("--model", metavar="PATH_OR_ID",
                       help="HF image classifier or CLIP/SigLIP zero-shot model: local folder, Hub id or a shipped "
                            "model's name (moxi-clip-mnist) (default: the embedded moxi-vit-mnist)")
    group.add_argument("--image", nargs="+", metavar="PATH_OR_URL", action="extend",
                       help="image file(s), folder(s) of images or http(s) URL(s) to explain "
                            "(default: the model folder's samples/)")
    group.add_argument("--label", metavar="LABEL",
                       help="class to explain for every image: its index, or for a zero-shot model a candidate "
                            "label's text (default: the model's prediction)")
    add_zero_shot_flags(group)
    add_removal_flags(group)
    add_trust_flag(group)
    group.add_argument("--output-dir", default=default_output, metavar="DIR",
                       help=f"{output_help} (default: {default_output})")
    add_batch_size_flag(group)


def _cli_options(curve_safe_only: bool = False) -> dict[str, tuple[Option, list[str]]]:
    """flag -> (its option, the methods declaring it), from :data:`moxi_hf.options.METHOD_OPTIONS`."""
    flags: dict[str, tuple[Option, list[str]]] = {}
    for method, options in METHOD_OPTIONS.items():
        for option in options:
            if option.cli and (option.curve_safe or not curve_safe_only):
                flags.setdefault(option.flag, (option, []))[1].append(method)
    return flags


def add_method_option_flags(parser: argparse.ArgumentParser, curve_safe_only: bool = False,
                            defaults: bool = False, skip: Sequence[str] = ()) -> None:
    """One flag per declared method option (``--num-samples``, ``--seed``, ``--early-stop``, ...).

    ``defaults``: give the flags their declared default (evaluate); otherwise they default to None
    (not given) so an option meant for another method can be refused.
    """
    group = parser.add_argument_group("method options")
    for flag, (option, _methods) in _cli_options(curve_safe_only).items():
        if option.name in skip:
            continue
        text = option.help if option.default is None else f"{option.help} (default: {option.default})"
        if option.type is bool:
            group.add_argument(flag, action="store_true", default=option.default if defaults else None, help=text)
        elif option.choices:
            group.add_argument(flag, choices=option.choices, default=option.default if defaults else None, help=text)
        else:
            kind = option.type if option.minimum is None else int_at_least(option.minimum)
            group.add_argument(flag, type=kind, default=option.default if defaults else None,
                               metavar=option.name.split("_")[-1][0].upper(), help=text)


def method_options(method: str, args: argparse.Namespace, strict: bool = True, curve_safe_only: bool = False) -> dict:
    """Keyword options of ``method`` from the flags; ``strict``: an option meant only for other methods is an error."""
    declared = {option.name for option in METHOD_OPTIONS.get(method, ())}
    options: dict = {}
    for flag, (option, methods) in _cli_options().items():
        value = getattr(args, option.name, None)
        if value is None or value is False:
            continue
        if option.name in declared and (option.curve_safe or not curve_safe_only):
            options[option.name] = value
        elif strict and option.name not in declared:
            only = " or ".join(f"--method {name}" for name in methods)
            raise MoXIError(f"{flag} only applies to {only}, not {method}")
    return with_budget_resolved(options)


def refuse_unused_options(methods: Sequence[str], args: argparse.Namespace) -> None:
    """A method-option flag given although none of ``methods`` declares it is an error naming the methods."""
    for flag, (option, declaring) in _cli_options().items():
        value = getattr(args, option.name, None)
        if value is not None and value is not False and not set(declaring) & set(methods):
            only = " or ".join(declaring)
            raise MoXIError(f"{flag} only applies to {only}, which is not among the methods ({', '.join(methods)})")


def load_explainer(args: argparse.Namespace):
    """The Explainer for ``--model`` (default: the embedded model) with the removal/reward/grid flags."""
    from ..explainer import Explainer

    model = args.model if args.model is not None else os.fspath(default_model_path())
    try:
        explainer = Explainer.from_pretrained(
            model, masking=args.masking, reward=args.reward, players_grid=args.players_grid,
            dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code,
            **zero_shot_arguments(args),
        )
        explainer.labelled()  # a zero-shot model with no labels anywhere: one line now
    except MoXIError as error:  # speak in flags, not keyword arguments
        raise MoXIError(str(error).replace("masking='pixel'", "--masking pixel")
                        .replace("use players_grid", "use --players-grid")
                        .replace("the logit reward", "--reward logit")) from None
    args.label = target_label(args.label, explainer)
    return explainer


@dataclass
class InputImage:
    """One input: ``path`` (a file as found, or an ``http(s)`` URL kept as str) and ``name``, what the rows
    record: the path relative to the ``--image`` folder or file given, or the URL without credentials, query
    or fragment."""

    path: Path | str
    name: str

    @property
    def file_name(self) -> str:
        """The last path component: the file's name, or that of the URL's path."""
        return url_file_name(self.path) if is_url(self.path) else Path(self.path).name


def url_file_name(url: str) -> str:
    """The last component of ``url``'s path (no query), e.g. ``cat.jpg``; ``image`` when the path has none."""
    return PurePosixPath(urlsplit(url).path).name or "image"


def resolve_images(args: argparse.Namespace) -> list[InputImage]:
    """``--image`` files (a folder: its image files), or the ``samples/`` of the model folder when none are given."""
    if not args.image:
        model_dir = model_folder(args.model) if args.model is not None else default_model_path()
        found = sample_images(model_dir) if model_dir is not None else []
        if not found:
            raise MoXIError(f"no --image given and the model {args.model!r} has no samples/ folder of images; "
                            "pass --image PATH")
        return [InputImage(path, path.name) for path in found]
    images: list[InputImage] = []
    for given in args.image:
        if is_url(given):
            images.append(InputImage(given, public_url(given)))
            continue
        path = Path(given)
        if path.is_dir():  # a folder stands for the image files in it
            images.extend(InputImage(p, p.relative_to(path).as_posix()) for p in folder_images(path))
        else:
            images.append(InputImage(path, path.name))
    return images


#: files of a folder named in the one line that lists them, before "and N more"
LISTED_FILES = 10


def _file_names(paths: Sequence[Path]) -> str:
    names = ", ".join(path.name for path in paths[:LISTED_FILES])
    return names + (f" and {len(paths) - LISTED_FILES} more" if len(paths) > LISTED_FILES else "")


def folder_images(folder: Path) -> list[Path]:
    """The image files of ``--image DIR``; its other files are named in one line on stderr (none: an error)."""
    from ..images import IMAGE_SUFFIXES, image_files

    found, others = image_files(folder)
    suffixes = ", ".join(IMAGE_SUFFIXES)
    if not found:
        holds = f"; it holds {_file_names(others)}" if others else ""
        raise MoXIError(f"image folder {str(folder)!r} has no image files ({suffixes}){holds}")
    if others:
        what = "1 file that is not an image" if len(others) == 1 else f"{len(others)} files that are not images"
        print(f"moxi: skipping {what} ({suffixes}) in {str(folder)!r}: {_file_names(others)}", file=sys.stderr)
    return found


def read_images(images: Sequence[InputImage]) -> tuple[list[InputImage], list[str]]:
    """(the readable images, one message per unreadable one); the images are read once to check them."""
    from ..images import load_image

    good, bad = [], []
    for image in images:
        try:
            load_image(image.path)
        except MoXIError as error:
            bad.append(str(error))
        else:
            good.append(image)
    return good, bad


def readable_images(args: argparse.Namespace) -> tuple[list[InputImage], list[str]]:
    """The input images that can be read, and one message per one that cannot (each printed on stderr).

    Raises MoXIError when none can be read, so a run with no usable image fails before loading the model.
    """
    images, bad = read_images(resolve_images(args))
    if not images:
        raise MoXIError(bad[0] if len(bad) == 1 else f"none of the {len(bad)} images could be read: {bad[0]}")
    for message in bad:
        print(f"moxi: skipping an image: {message}", file=sys.stderr)
    return images, bad


def interrupted_note(command: str, done: int, total: int, output_dir: Path, compared: int | None = None) -> str:
    """What an interrupted command says on stderr (``compared``: images of ``explain --compare`` compared)."""
    if not done:
        return f"moxi {command}: interrupted before any image was finished; nothing was written to {output_dir}"
    also = f" ({compared} of them compared)" if compared is not None else ""
    return (f"moxi {command}: interrupted after {done} of {total} images; the {done} finished{also} are written to "
            f"{output_dir}{os.sep}, marked as interrupted in its config.json")


def finish(bad: Sequence[str], total: int) -> int:
    """Exit code of a run: 1 (with a closing line) when some images could not be read, else 0."""
    if not bad:
        return 0
    print(f"moxi: error: {len(bad)} of {total} images could not be read (listed above); the others are explained",
          file=sys.stderr)
    return 1


def local_paths(images: Sequence[InputImage]) -> list[Path]:
    """The files among ``images`` (URLs left out): the inputs an output folder must not hold."""
    return [Path(image.path) for image in images if not is_url(image.path)]


def load_images(images: Sequence[InputImage]) -> list:
    """RGB PIL images of ``images``."""
    from ..images import load_image

    return [load_image(image.path) for image in images]


def output_names(paths: Sequence[Path | InputImage]) -> list[str]:
    """One folder name per image: its file stem (a URL: that of its last path component), with ``-2``,
    ``-3``, ... added where stems repeat."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        file_name = path.file_name if isinstance(path, InputImage) else Path(path).name
        stem = PurePosixPath(file_name).stem or "image"
        name, count = stem, 1
        while name in taken:
            count += 1
            name = f"{stem}-{count}"
        taken.add(name)
        names.append(name)
    return names


def batches(items: Sequence, size: int) -> Iterator[tuple[int, Sequence]]:
    """(start index, slice) over ``items`` in chunks of ``size``."""
    for start in range(0, len(items), size):
        yield start, items[start: start + size]


def summary_line(name: str, explanation, where: str) -> str:
    """One line per image for the terminal: the prediction, what was explained and its "patches needed" sentence."""
    return (f"{name}: predicted {explanation.predicted_text}; explained {explanation.label_text} with "
            f"{explanation.method} ({explanation.curve}): {explanation.needed_text} -> {where}")


def model_label(args: argparse.Namespace, explainer) -> str:
    """How to name the model to the user: the embedded default by name, others as given."""
    if args.model is not None:
        return str(args.model)
    relative = os.path.relpath(explainer.name)
    return f"the embedded default model ({explainer.name if relative.startswith('..') else relative})"


def print_line(quiet: bool, text: str, file=None) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(text, file=file or sys.stdout)
