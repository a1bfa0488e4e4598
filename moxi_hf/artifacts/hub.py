"""Share artifact folders on the Hugging Face Hub as dataset repos (``moxi push``).

The token comes from the standard sources (``token=`` argument, ``HF_TOKEN``, the ``hf auth login``
cache); it is only ever sent in the ``Authorization`` header, never printed, logged or written.
Before any request the folder is read as :func:`moxi_hf.load_artifacts` reads it, and a link that
leads out of it is refused; every request then waits at most :data:`HUB_TIMEOUT` seconds without
progress (:data:`moxi_hf.options.DEFAULT_PUSH_TIMEOUT`, which ``moxi push --help`` reads).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from ..errors import MoXIError
from ..options import DEFAULT_PUSH_TIMEOUT
from ..secrets import scrub_text
from .folder import check_artifact_dir

__all__ = ["HUB_TIMEOUT", "IGNORE_PATTERNS", "HubRequestError", "check_upload", "push_artifacts", "retry_command",
           "upload_file_list"]

#: never uploaded: hidden files and folders (``.partial/`` resume state, ``.x.tmp`` atomic-write temporaries)
IGNORE_PATTERNS = [".*", "*/.*", "*.tmp", "*~", "__pycache__/*", "*/__pycache__/*"]
#: seconds a Hub request may go without progress (connecting, each read or write) before the push gives up
HUB_TIMEOUT = DEFAULT_PUSH_TIMEOUT


class HubRequestError(MoXIError):
    """A Hub request of an upload failed (the folder itself was fine): running it again may succeed."""


def _uploaded(names: list[str]) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    return list(filter_repo_objects(names, ignore_patterns=IGNORE_PATTERNS))


def _links_out(root: Path) -> list[str]:
    """``"name -> target"`` of every file link that would be uploaded but leads out of ``root``."""
    real_root = root.resolve()
    found = []
    for current, _, files in os.walk(root):  # linked folders are neither entered here nor uploaded
        for name in files:
            path = Path(current) / name
            if not path.is_symlink():
                continue
            relative = path.relative_to(root).as_posix()
            if _uploaded([relative]) and not path.resolve().is_relative_to(real_root):
                found.append(f"{relative} -> {os.readlink(path)}")
    return sorted(found)


def upload_file_list(output_dir: str | os.PathLike) -> list[str]:
    """The repo paths ``push_artifacts`` uploads from ``output_dir`` (sorted, POSIX).

    Raises :class:`MoXIError` naming every link among them that leads out of the folder: no file
    from outside the folder is ever uploaded.
    """
    root = Path(output_dir)
    leaving = _links_out(root)
    if leaving:
        raise MoXIError(f"{root} holds links to files outside it ({'; '.join(leaving)}); moxi push uploads nothing "
                        "from outside the folder: remove the links or put copies of the files in their place")
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return _uploaded(files)


def check_upload(output_dir: str | os.PathLike) -> tuple[Path, list[str]]:
    """(the folder, the files to upload): the folder read as :func:`moxi_hf.load_artifacts` reads it and its
    links checked, before any request. Raises :class:`MoXIError` naming the first problem."""
    from .checks import check_artifact_files

    folder = check_artifact_dir(output_dir)
    check_artifact_files(folder)
    return folder, upload_file_list(folder)


def retry_command(output_dir: str | os.PathLike, repo_id: str, revision: str | None = None,
                  endpoint: str | None = None) -> str:
    """The ``moxi push`` command that retries an upload (never with a token)."""
    words = ["moxi", "push", os.fspath(output_dir), "--repo-id", repo_id]
    if revision:
        words += ["--revision", revision]
    if endpoint:
        words += ["--endpoint", endpoint]
    return " ".join(shlex.quote(word) for word in words)


def _one_line(text: str, secret: str | None) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return scrub_text(line, [secret])


def _http_error_message(error: Exception, step: str, repo_id: str, endpoint: str, secret: str | None) -> str:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    server = _one_line(getattr(error, "server_message", None) or "", secret)
    where = f"{step} dataset repo {repo_id} on {endpoint}"
    if status == 401:
        return (f"authentication failed (HTTP 401) while {where}: log in with `hf auth login`, "
                "set HF_TOKEN, or pass --token with a write token")
    if status == 403:
        return f"permission denied (HTTP 403) while {where}: the token needs write access to {repo_id}"
    if status == 404:
        return f"not found (HTTP 404) while {where}: check the repo id and revision" + (f" ({server})" if server else "")
    detail = server or _one_line(str(error), secret)
    return f"the Hub answered HTTP {status} while {where}" + (f": {detail}" if detail else "")


@contextmanager
def _bounded_requests(seconds: float) -> Iterator[None]:
    """Every request of the shared Hub client waits at most ``seconds`` without progress, then the old bound."""
    from huggingface_hub.utils import get_session

    session = get_session()
    previous = session.timeout
    session.timeout = type(previous)(seconds)
    try:
        yield
    finally:
        session.timeout = previous


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or any(cls.__name__ == "TimeoutException" for cls in type(error).__mro__)


def push_artifacts(output_dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
                   commit_message: str | None = None, token: str | None = None, endpoint: str | None = None,
                   timeout: float = HUB_TIMEOUT) -> str:
    """Upload an artifact folder to the dataset repo ``repo_id``; returns the repo URL (``/tree/<revision>`` if given).

    Before any request the folder is checked (:func:`check_upload`: damaged files, links out of the
    folder). Creates the repo (``private`` only applies when it is created) and, for a ``revision``
    other than main, the branch. Hidden files and folders (``.partial/``, temporaries) are not
    uploaded; local files are never modified. Each request waits at most ``timeout`` seconds without
    progress. Any failure becomes a one-line :class:`MoXIError` (:class:`HubRequestError` once requests
    have started).
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    folder, _ = check_upload(output_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise MoXIError(f"invalid repo id {repo_id!r}: expected USER/NAME ({_one_line(str(error), None)})") from None
    if not timeout or timeout <= 0:
        raise MoXIError(f"timeout must be a positive number of seconds, got {timeout!r}")
    api = HfApi(endpoint=endpoint, token=token)
    endpoint = api.endpoint
    secret = token or get_token()
    if not secret:  # say so before any request: offline, the Hub's 401 would never come
        raise MoXIError(f"no Hugging Face token to upload {folder} with: log in with `hf auth login` or set "
                        "HF_TOKEN to a write token (or pass --token), then rerun `moxi push`")
    step = "creating"
    try:
        with _bounded_requests(timeout):
            repo_url = api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
            full_id = repo_url.repo_id or repo_id
            if revision and revision != "main":
                step = f"creating branch {revision!r} of"
                api.create_branch(full_id, branch=revision, repo_type="dataset", exist_ok=True)
            step = "uploading to"
            api.upload_folder(
                folder_path=str(folder),
                repo_id=full_id,
                repo_type="dataset",
                revision=revision,
                commit_message=commit_message or f"Upload MoXI explanations ({folder.name})",
                ignore_patterns=list(IGNORE_PATTERNS),
            )
    except HfHubHTTPError as error:
        raise HubRequestError(_http_error_message(error, step, repo_id, endpoint, secret)) from error
    except Exception as error:
        if _is_timeout(error):
            raise HubRequestError(f"no answer from the Hub at {endpoint} within {timeout:g} s while {step} dataset "
                                  f"repo {repo_id} (a slow network may need a longer --timeout)") from error
        if isinstance(error, MoXIError):
            raise
        if isinstance(error, (OSError, ValueError)):  # connection refused, README metadata rejected
            raise HubRequestError(f"{step} dataset repo {repo_id} on {endpoint} failed: "
                                  f"{type(error).__name__}: {_one_line(str(error), secret)}") from error
        if "httpx" not in type(error).__module__:  # httpx transport errors are not OSErrors
            raise
        raise HubRequestError(f"could not reach the Hub at {endpoint} while {step} dataset repo {repo_id}: "
                              f"{type(error).__name__}: {_one_line(str(error), secret)}") from error
    url = str(repo_url).rstrip("/")
    return f"{url}/tree/{quote(revision, safe='')}" if revision and revision != "main" else url
