"""Image URLs: what may be recorded of one, and fetching one within a total deadline and a size cap.

A URL may carry credentials (``user:password@``), a query string (``?token=...``) and a fragment;
none of them is ever written or printed: :func:`public_url` keeps the scheme, host, port and path.
Fetching reads the body in pieces and stops at :data:`URL_DEADLINE` seconds in all or
:data:`URL_MAX_BYTES` bytes, whichever comes first; both are settable per call or through the
environment (:data:`DEADLINE_ENV`, :data:`MAX_BYTES_ENV`), so the command line honours them too.

Only the standard library is imported: the command line names URLs before loading anything heavy.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import MoXIError

__all__ = ["DEADLINE_ENV", "MAX_BYTES_ENV", "URL_DEADLINE", "URL_MAX_BYTES", "URL_TIMEOUT", "fetch", "is_url",
           "public_url"]

#: seconds to wait for each step of a URL fetch without progress (connecting, each read)
URL_TIMEOUT = 10.0
#: seconds a URL fetch may take in all
URL_DEADLINE = 60.0
#: bytes a fetched image may have: the web demo's upload limit
URL_MAX_BYTES = 20_000_000
#: environment variables overriding :data:`URL_DEADLINE` (seconds) and :data:`URL_MAX_BYTES` (bytes)
DEADLINE_ENV = "MOXI_URL_DEADLINE"
MAX_BYTES_ENV = "MOXI_URL_MAX_BYTES"
_PIECE = 1 << 16


def is_url(given: object) -> bool:
    """True for an ``http://`` or ``https://`` string."""
    return isinstance(given, str) and given.lower().startswith(("http://", "https://"))


def public_url(url: str) -> str:
    """``url`` as it may be written or printed: scheme, host, port and path; never credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return urlunsplit((parts.scheme.lower(), host + (f":{port}" if port else ""), parts.path, "", ""))


def _limit(value: float | None, variable: str, default: float) -> float:
    if value is None:
        text = os.environ.get(variable)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise MoXIError(f"${variable} must be a positive number, got {text!r}") from None
    if not value > 0:
        raise MoXIError(f"{variable} must be a positive number, got {value!r}")
    return value


def _request(url: str) -> urllib.request.Request:
    """A request without the URL's credentials (sent as a basic Authorization header) or fragment."""
    parts = urlsplit(url)
    headers = {"User-Agent": "moxi-hf"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.request.Request(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), headers=headers)


def _read_timeout(response, seconds: float) -> None:
    """Bound the next read of ``response`` to ``seconds`` (http.client keeps the socket under ``fp.raw``)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def fetch(url: str, timeout: float = URL_TIMEOUT, deadline: float | None = None,
          max_bytes: int | None = None) -> bytes:
    """The body of ``url``: at most ``max_bytes`` bytes (default ``$MOXI_URL_MAX_BYTES`` or :data:`URL_MAX_BYTES`)
    within ``deadline`` seconds in all (default ``$MOXI_URL_DEADLINE`` or :data:`URL_DEADLINE`), each step
    within ``timeout`` seconds. Any failure is one :class:`MoXIError` line naming :func:`public_url`.
    """
    deadline = _limit(deadline, DEADLINE_ENV, URL_DEADLINE)
    max_bytes = int(_limit(max_bytes, MAX_BYTES_ENV, URL_MAX_BYTES))
    name = public_url(url)
    too_large = (f"could not fetch image {name!r}: it is larger than the limit of {max_bytes:,} bytes "
                 f"(${MAX_BYTES_ENV} sets another)")
    late = f"could not fetch image {name!r}: not complete within {deadline:g} s (${DEADLINE_ENV} sets another limit)"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(_request(url), timeout=min(timeout, deadline)) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise MoXIError(too_large)
            pieces, size = [], 0
            while True:
                left = deadline - (time.monotonic() - started)
                if left <= 0:
                    raise MoXIError(late)
                _read_timeout(response, min(timeout, left))
                piece = response.read1(_PIECE)
                if not piece:
                    return b"".join(pieces)
                size += len(piece)
                if size > max_bytes:
                    raise MoXIError(too_large)
                pieces.append(piece)
    except urllib.error.HTTPError as error:
        raise MoXIError(f"could not fetch image {name!r}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
            if time.monotonic() - started >= deadline:
                raise MoXIError(late) from None
            raise MoXIError(f"could not fetch image {name!r}: no answer within {timeout:g} s") from None
        raise MoXIError(f"could not fetch image {name!r}: {reason}") from None
