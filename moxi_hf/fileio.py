"""Writing files atomically (text, bytes, JSON) and the package versions recorded with every result."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

__all__ = ["VERSIONED_PACKAGES", "atomic_write", "package_versions", "read_json", "write_json"]

#: packages whose versions shape the results (recorded in config.json)
VERSIONED_PACKAGES = ("torch", "transformers", "datasets", "accelerate", "huggingface_hub", "numpy", "safetensors")


def atomic_write(path: str | os.PathLike, data: str | bytes | dict | list) -> Path:
    """Write text, bytes or JSON (a dict/list, indented) to ``path`` via a temporary file + ``os.replace``.

    A crash never leaves a half-written file; the temporary is hidden (``.name.PID.tmp``) so it is
    neither loaded as data nor uploaded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        data = json.dumps(data, indent=2) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        temporary.write_text(data, encoding="utf-8")
    else:
        temporary.write_bytes(bytes(data))
    os.replace(temporary, path)
    return path


def write_json(path: str | os.PathLike, data: dict | list) -> Path:
    """JSON (indented) written atomically."""
    return atomic_write(path, data)


def read_json(path: str | os.PathLike, missing=None):
    """The JSON in ``path``, or ``missing`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else missing


def package_versions() -> dict[str, str]:
    """Python, moxi-hf and :data:`VERSIONED_PACKAGES` versions ("not installed" where missing)."""
    from . import __version__

    versions = {"python": platform.python_version(), "moxi-hf": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
