"""Share artifact folders on the Hugging Face Hub as dataset repos (``moxi push``).

The token comes from the standard sources (``token=`` argument, ``HF_TOKEN``, the ``hf auth login``
cache); it is only ever sent in the ``Authorization`` header, never printed, logged or written.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from ..errors import MoXIError
from .folder import check_artifact_dir

__all__ = ["IGNORE_PATTERNS", "push_artifacts", "upload_file_list"]

#: never uploaded: hidden files and folders (``.partial/`` resume state, ``.x.tmp`` atomic-write temporaries)
IGNORE_PATTERNS = [".*", "*/.*", "*.tmp", "*~", "__pycache__/*", "*/__pycache__/*"]


def upload_file_list(output_dir: str | os.PathLike) -> list[str]:
    """The repo paths ``push_artifacts`` uploads from ``output_dir`` (sorted, POSIX)."""
    from huggingface_hub.utils import filter_repo_objects

    root = Path(output_dir)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return list(filter_repo_objects(files, ignore_patterns=IGNORE_PATTERNS))


def _one_line(text: str, secret: str | None) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line.replace(secret, "***") if secret else line


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


def push_artifacts(output_dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
                   commit_message: str | None = None, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload an artifact folder to the dataset repo ``repo_id``; returns the repo URL (``/tree/<revision>`` if given).

    Creates the repo (``private`` only applies when it is created) and, for a ``revision`` other
    than main, the branch. Hidden files and folders (``.partial/``, temporaries) are not uploaded;
    local files are never modified. Any failure becomes a one-line :class:`MoXIError`.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    folder = check_artifact_dir(output_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise MoXIError(f"invalid repo id {repo_id!r}: expected USER/NAME ({_one_line(str(error), None)})") from None
    api = HfApi(endpoint=endpoint, token=token)
    endpoint = api.endpoint
    secret = token or get_token()
    if not secret:  # say so before any request: offline, the Hub's 401 would never come
        raise MoXIError(f"no Hugging Face token to upload {folder} with: log in with `hf auth login` or set "
                        "HF_TOKEN to a write token (or pass --token), then rerun `moxi push`")
    step = "creating"
    try:
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
        raise MoXIError(_http_error_message(error, step, repo_id, endpoint, secret)) from error
    except (OSError, ValueError) as error:  # connection refused, timeouts, README metadata rejected
        if isinstance(error, MoXIError):
            raise
        raise MoXIError(f"{step} dataset repo {repo_id} on {endpoint} failed: "
                        f"{type(error).__name__}: {_one_line(str(error), secret)}") from error
    except Exception as error:  # httpx transport errors are not OSErrors
        if "httpx" not in type(error).__module__:
            raise
        raise MoXIError(f"could not reach the Hub at {endpoint} while {step} dataset repo {repo_id}: "
                        f"{type(error).__name__}: {_one_line(str(error), secret)}") from error
    url = str(repo_url).rstrip("/")
    return f"{url}/tree/{quote(revision, safe='')}" if revision and revision != "main" else url
