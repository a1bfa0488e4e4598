"""``moxi push DIR --repo-id USER/NAME``: upload an artifact folder to the Hub as a dataset repo.

The token comes from ``--token``, ``HF_TOKEN`` or the ``hf auth login`` cache and is never printed.
The repo URL is the last line on stdout.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_sub_command

__all__ = ["add_parser", "run"]


HELP = "upload an evaluation/explain output folder to the Hub as a dataset repo"
DESCRIPTION = """\
Upload an artifact folder (README.md card, data/explanations.parquet, curves.json, config.json, plots/) to a
Hugging Face dataset repo. Hidden files and folders (.partial/, temporaries) are skipped; local files are not
modified.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="artifact folder written by `moxi evaluate` or `moxi explain`")
    parser.add_argument("--repo-id", required=True, metavar="USER/NAME", help="dataset repo to create or update")
    parser.add_argument("--private", action="store_true", help="create the repo as private (ignored if it exists)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to push to, created if missing (default: main)")
    parser.add_argument("--commit-message", metavar="TEXT", help="commit summary")
    parser.add_argument("--token", metavar="TOKEN",
                        help="Hub write token (default: HF_TOKEN or the `hf auth login` cache; "
                             "prefer those, a token on the command line lands in shell history)")
    parser.add_argument("--endpoint", metavar="URL", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import check_artifact_dir
    from ..artifacts.hub import push_artifacts, upload_file_list

    folder = check_artifact_dir(args.directory)
    if not args.quiet:
        files = upload_file_list(folder)
        size = sum((folder / name).stat().st_size for name in files)
        print(f"moxi push: uploading {len(files)} files ({size / 1024:.1f} KiB) from {folder} "
              f"to dataset repo {args.repo_id}", file=sys.stderr)
    else:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    url = push_artifacts(folder, args.repo_id, private=args.private, revision=args.revision,
                         commit_message=args.commit_message, token=args.token, endpoint=args.endpoint)
    print(url)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(subparsers, "push", run, HELP, DESCRIPTION)
    add_arguments(parser)
    return parser
