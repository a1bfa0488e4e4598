"""The ``moxi`` command line: ``moxi explain``, ``moxi compare``, ``moxi evaluate``, ``moxi push``, ``moxi demo``.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
Exit codes: 0 ok, 2 usage error (argparse), 1 runtime failure with a one-line message
(the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from ..defaults import default_model_path
from ..threads import apply_thread_policy
from .common import add_common_flags, add_threads_flag

__all__ = ["COMMANDS", "add_common_flags", "build_parser", "default_model_path", "main"]

#: sub-command name -> module (inside moxi_hf.cli) that defines it
COMMANDS = {
    "explain": "explain",
    "compare": "compare",
    "evaluate": "evaluate",
    "push": "push",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moxi",
        description="MoXI explanations for Hugging Face image classifiers.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    add_threads_flag(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module_name}").add_parser(subparsers)
    return parser


def _quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        from datasets.utils import logging as ds_logging

        ds_logging.set_verbosity_error()
        ds_logging.disable_progress_bar()
    except ImportError:
        pass
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _check_local_names(args: argparse.Namespace) -> None:
    """A mistyped ``--model``/``--dataset`` folder fails at once, before torch and datasets are imported."""
    from ..sources import check_local_name

    for kind in ("model", "dataset"):
        name = getattr(args, kind, None)
        if isinstance(name, str):
            check_local_name(name, kind)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Common flags may also be given after the sub-command.
    args.quiet = bool(getattr(args, "quiet", False) or getattr(args, "sub_quiet", False))
    args.debug = bool(getattr(args, "debug", False) or getattr(args, "sub_debug", False))
    threads = getattr(args, "sub_threads", None) or getattr(args, "threads", None)
    try:
        apply_thread_policy(threads)  # before torch is imported: OpenMP reads its settings once
        _check_local_names(args)
        _quiet_libraries()
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("moxi: interrupted; finished results are kept", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for the user, traceback with --debug
        print_error(error, args)
        return 1


def print_error(error: BaseException, args: argparse.Namespace) -> None:
    """``moxi: error: <first line>`` on stderr (the traceback before it with ``--debug``), credentials scrubbed."""
    from ..secrets import known_secrets, scrub_text

    secrets = known_secrets([getattr(args, "token", None)])
    if args.debug:
        print(scrub_text("".join(traceback.format_exception(error)), secrets), file=sys.stderr, end="")
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"moxi: error: {scrub_text(message, secrets)}", file=sys.stderr)
