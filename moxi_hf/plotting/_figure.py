"""Figures without pyplot: a ``matplotlib.figure.Figure`` never touches the user's backend."""

from __future__ import annotations

import io
import os
from pathlib import Path

__all__ = ["new_figure", "png_bytes", "save_figure"]


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def png_bytes(figure, dpi: int = 120) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG atomically; returns the path."""
    from ..fileio import atomic_write

    return atomic_write(path, png_bytes(figure, dpi))
