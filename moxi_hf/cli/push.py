"""``moxi push DIR --repo-id USER/NAME``: upload an artifact folder to the Hub as a dataset repo.

The folder is checked first (each file read as ``load_artifacts`` reads it, no link leading out
of it) and the files to upload are listed; ``--dry-run`` stops there. The token comes from
``--token``, ``HF_TOKEN`` or the ``hf auth login`` cache and is never printed. The repo URL is the
last line on stdout.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_sub_command

__all__ = ["add_parser", "run"]


HELP = "upload an evaluation/explain output folder to the Hub as a dataset repo"
DESCRIPTION = """\
Upload an artifact folder (README.md card, data/explanations.parquet, curves.json, config.json, plots/) to a
Hugging Face dataset repo. The folder is checked and the files to upload are listed before any request; hidden
files and folders (.partial/, temporaries) are skipped, links to files outside the folder are refused, local
files are not modified.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEFAULT_PUSH_TIMEOUT as HUB_TIMEOUT

    parser.add_argument("directory", metavar="DIR", help="artifact folder written by `moxi evaluate` or `moxi explain`")
    parser.add_argument("--repo-id", required=True, metavar="USER/NAME", help="dataset repo to create or update")
    parser.add_argument("--private", action="store_true", help="create the repo as private (ignored if it exists)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to push to, created if missing (default: main)")
    parser.add_argument("--commit-message", metavar="TEXT", help="commit summary")
    parser.add_argument("--token", metavar="TOKEN",
                        help="Hub write token (default: HF_TOKEN or the `hf auth login` cache; "
                             "prefer those, a token on the command line lands in shell history)")
    parser.add_argument("--endpoint", metavar="URL", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--timeout", type=_seconds, default=HUB_TIMEOUT, metavar="SECONDS",
                        help=f"give up on a Hub request after this long without progress (default: {HUB_TIMEOUT:g})")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the folder and list the files that would be uploaded (on stdout); send nothing")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    from ..artifacts.hub import HubRequestError, check_upload, push_artifacts, retry_command

    folder, files = check_upload(args.directory)
    sizes = [(folder / name).stat().st_size for name in files]
    listing = [f"  {name} ({_kib(size)})" for name, size in zip(files, sizes)]
    summary = f"{len(files)} files ({_kib(sum(sizes))}) from {folder} to dataset repo {args.repo_id}"
    if args.dry_run:
        print(f"moxi push --dry-run: would upload {summary}; nothing was uploaded", file=sys.stderr)
        print("\n".join(line.strip() for line in listing))
        return 0
    if not args.quiet:
        print(f"moxi push: uploading {summary}:", *listing, sep="\n", file=sys.stderr)
    else:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        url = push_artifacts(folder, args.repo_id, private=args.private, revision=args.revision,
                             commit_message=args.commit_message, token=args.token, endpoint=args.endpoint,
                             timeout=args.timeout)
    except HubRequestError as error:
        command = retry_command(args.directory, args.repo_id, args.revision, args.endpoint)
        raise HubRequestError(f"{error}; nothing local changed: retry with `{command}`") from error
    print(url)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(subparsers, "push", run, HELP, DESCRIPTION)
    add_arguments(parser)
    return parser
