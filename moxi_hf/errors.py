"""The one exception type for user mistakes (bad input, missing files, unknown options)."""

from __future__ import annotations

__all__ = ["MoXIError"]


class MoXIError(ValueError):
    """A problem with what the user asked for; the message says what is wrong and how to fix it."""
