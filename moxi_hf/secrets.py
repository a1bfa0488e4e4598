"""Keeping credentials out of what we write and print: one scrubber for files, messages and tracebacks.

A credential is the active Hugging Face token (``HF_TOKEN``, the ``hf auth login`` cache), any
token given on the command line, anything shaped like a Hugging Face token (``hf_`` and 30 or
more letters and digits) and the value of an ``Authorization`` header (``Bearer ...``,
``Basic ...``). Each becomes ``***``. Only the standard library is imported at module level.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["MASK", "SECRET_KEYS", "known_secrets", "scrub_secrets", "scrub_text"]

#: what a credential is replaced by
MASK = "***"
#: config keys that may hold credentials; they are dropped before anything is written.
SECRET_KEYS = frozenset({"token", "hf_token", "auth_token", "access_token", "use_auth_token", "api_key"})
_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}")
_AUTHORIZATION = re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?(?:bearer\s+|basic\s+|token\s+)?)[^\s'",;)]+""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """The credentials to hide: ``extra`` (e.g. ``--token``), the token environment variables and the active token."""
    found = [value for value in (*extra, *(os.environ.get(name) for name in _TOKEN_ENV)) if value]
    try:
        from huggingface_hub import get_token

        active = get_token()
    except Exception:  # noqa: BLE001 - no token source is fine here
        active = None
    if active:
        found.append(active)
    return sorted(set(found), key=len, reverse=True)  # longest first: a token inside another is hidden whole


def scrub_text(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """``text`` with every credential replaced by ``***`` (``secrets``: the known ones, default :func:`known_secrets`)."""
    for secret in known_secrets() if secrets is None else sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _HF_TOKEN.sub(MASK, text)
    text = _AUTHORIZATION.sub(lambda match: match.group(1) + MASK, text)
    return _BEARER.sub(lambda match: match.group(1) + MASK, text)


def scrub_secrets(value, secret: str | None = ...):
    """``value`` (JSON-like) without credential-like keys and with every string scrubbed (:func:`scrub_text`).

    ``secret``: the token to hide besides the patterns (default: the known ones).
    """
    secrets = known_secrets() if secret is ... else [secret]
    return _scrub(value, secrets)


def _scrub(value, secrets: list[str | None]):
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items() if str(key).lower() not in SECRET_KEYS}
    if isinstance(value, (list, tuple)):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value
