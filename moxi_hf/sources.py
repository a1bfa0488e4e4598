"""Where a model or dataset comes from: a local folder or a Hugging Face Hub id, decided up front.

A name that is an existing folder is local. A name that names no folder but reads as a path
(``./x``, ``../x``, ``/x``, ``~/x``, a relative path whose first component exists such as
``models/typo``, more than one ``/``, a trailing separator) is a mistyped folder: refused at once,
never sent to the Hub. Anything else is a Hub id; unless ``HF_HUB_OFFLINE`` is set, one request
with a short timeout checks that the Hub answers, so no network fails in seconds instead of after
the Hub client's retries. A local model's ``*.safetensors`` headers are read to catch a truncated
download before the weights are loaded.
"""

from __future__ import annotations

import difflib
import os
import urllib.error
import urllib.request

from .errors import MoXIError

__all__ = ["HUB_TIMEOUT", "check_local_name", "looks_like_path", "resolve_dataset_source", "resolve_model_source"]

#: Seconds to wait for the Hub to answer before a Hub id is given up on.
HUB_TIMEOUT = 5.0


def looks_like_path(name: str) -> bool:
    """Whether ``name`` reads as a file-system path rather than a Hub id (``owner/name`` or ``name``)."""
    separators = {"/", os.sep, os.altsep} - {None}
    if name in (".", "..", "~") or name.startswith(("./", "../", "~", ".\\", "..\\")) or os.path.isabs(name):
        return True
    if os.path.splitdrive(name)[0]:
        return True
    if any(name.endswith(sep) for sep in separators):
        return True
    if os.sep != "/" and os.sep in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and os.path.exists(parts[0]))


def _suggestion(path: str) -> str:
    parent, leaf = os.path.split(path.rstrip("/" + os.sep))
    try:
        entries = [entry for entry in os.listdir(parent or ".") if os.path.isdir(os.path.join(parent or ".", entry))]
    except OSError:
        return ""
    close = difflib.get_close_matches(leaf, entries, n=1)
    return f"; did you mean {os.path.join(parent, close[0])!r}?" if close else ""


def check_local_name(name: str, kind: str) -> str | None:
    """The expanded local path if ``name`` is local, None for a Hub id; MoXIError for a missing folder."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise MoXIError(f"{name!r} is a file, not a {kind} folder; give the folder that holds the {kind}")
    if looks_like_path(name):
        raise MoXIError(f"no such folder: {name!r} (the {kind} path does not exist{_suggestion(path)})")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise MoXIError(f"no such folder: {name!r}, and it is not a Hub id either (Hub ids look like "
                        "'owner/name')") from None
    return None


def _check_hub(repo_id: str, kind: str, local_files_only: bool) -> None:
    from huggingface_hub import constants

    if local_files_only or constants.is_offline_mode():
        return
    endpoint = constants.ENDPOINT.rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/{kind}s/{repo_id}", method="HEAD",
                                     headers={"User-Agent": "moxi-hf"})
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT):  # any answer, even 401/404, means reachable
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
            reason = f"no answer within {HUB_TIMEOUT:g} s"
    if kind == "model" and _in_cache(repo_id):
        hint = "it is in your Hub cache: set HF_HUB_OFFLINE=1 to use that copy without the network"
    else:
        hint = (f"check the network, or set HF_HUB_OFFLINE=1 to use {kind}s already in your Hub cache; "
                f"if {repo_id!r} is meant to be a local folder, it does not exist")
    raise MoXIError(f"could not reach the Hugging Face Hub at {endpoint} ({reason}) to load the {kind} "
                    f"{repo_id!r}; {hint}")


def _in_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - a broken cache is just "not cached"
        return False


def _check_checkpoints(name: str, folder: str) -> None:
    """A clear error for a truncated or corrupt ``*.safetensors`` file (only its header is read)."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(os.listdir(folder)):
        if not file.endswith(".safetensors"):
            continue
        try:
            with safe_open(os.path.join(folder, file), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise MoXIError(
                f"the weights file {os.path.join(name, file)!r} is damaged or incomplete ({error}); "
                "download it again, or re-save the model with save_pretrained"
            ) from None


def resolve_model_source(name: str | os.PathLike, local_files_only: bool = False) -> str:
    """``name`` as ``from_pretrained`` should get it: an existing model folder (``~`` expanded), the folder of a
    model shipped with the package by its name (:data:`moxi_hf.defaults.SHIPPED_MODELS`), or a Hub id.

    Raises MoXIError for a mistyped folder, a folder without ``config.json``, a damaged
    ``*.safetensors`` file, or a Hub id when the Hub cannot be reached (within :data:`HUB_TIMEOUT`).
    """
    name = os.fspath(name)
    path = check_local_name(name, "model")
    if path is None:
        from .defaults import shipped_model_path

        shipped = shipped_model_path(name)  # moxi-clip-mnist, moxi-vit-mnist: the package's own copy
        if shipped is not None:
            return os.fspath(shipped)
        _check_hub(name, "model", local_files_only)
        return name
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise MoXIError(f"{name!r} is not a model folder: it has no config.json")
    _check_checkpoints(name, path)
    return path if name.startswith("~") else name


def resolve_dataset_source(name: str | os.PathLike, local_files_only: bool = False) -> str:
    """``name`` as ``datasets.load_dataset`` should get it: an existing folder (``~`` expanded) or a Hub id."""
    name = os.fspath(name)
    path = check_local_name(name, "dataset")
    if path is None:
        _check_hub(name, "dataset", local_files_only)
        return name
    return path if name.startswith("~") else name
