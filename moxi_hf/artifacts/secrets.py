"""Keeping credentials out of written files."""

from __future__ import annotations

__all__ = ["SECRET_KEYS", "scrub_secrets"]

#: config keys that may hold credentials; they are dropped before anything is written.
SECRET_KEYS = frozenset({"token", "hf_token", "auth_token", "access_token", "use_auth_token", "api_key"})


def _active_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no token source is fine here
        return None


def scrub_secrets(value, secret: str | None = ...):
    """Drop credential-like keys and any string containing the active HF token (recursively)."""
    if secret is ...:
        secret = _active_token()
    if isinstance(value, dict):
        return {key: scrub_secrets(item, secret) for key, item in value.items() if str(key).lower() not in SECRET_KEYS}
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(item, secret) for item in value]
    if isinstance(value, str) and secret and secret in value:
        return value.replace(secret, "***")
    return value
