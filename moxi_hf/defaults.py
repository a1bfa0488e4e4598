"""Where the embedded default model (a tiny ViT trained on MNIST digits) and its sample images live.

The model's one copy is ``models/moxi-vit-mnist/`` in the repository. A wheel (``pip install .``,
a package index) carries it inside the package as ``moxi_hf/models/moxi-vit-mnist/``; a source
checkout or an editable install reads it from ``models/``. ``MOXI_DEFAULT_MODEL`` (a model folder)
overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MoXIError

__all__ = ["DEFAULT_MODEL_NAME", "DEFAULT_MODEL_ENV", "default_model_path", "default_sample_images", "sample_images"]

DEFAULT_MODEL_NAME = "moxi-vit-mnist"
#: environment variable that overrides the default model folder
DEFAULT_MODEL_ENV = "MOXI_DEFAULT_MODEL"


def _shipped_model_path() -> Path:
    """Inside the installed package (a wheel), else ``models/`` of the source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "models" / DEFAULT_MODEL_NAME
    return installed if installed.is_dir() else package.parent / "models" / DEFAULT_MODEL_NAME


def default_model_path() -> Path:
    """The folder of the embedded default model: ``$MOXI_DEFAULT_MODEL``, else the one shipped with the package.

    Raises :class:`MoXIError` when it is missing (an install that lost its files, or a wrong override).
    """
    override = os.environ.get(DEFAULT_MODEL_ENV)
    path = Path(override).expanduser() if override else _shipped_model_path()
    if not (path / "config.json").is_file():
        where = f"${DEFAULT_MODEL_ENV}={override!r}" if override else f"{str(path)!r}"
        raise MoXIError(f"the embedded default model was not found at {where} (it ships inside the moxi-hf "
                        "package: reinstall it, or unset the override); pass --model PATH_OR_ID")
    return path


def sample_images(model_dir: str | os.PathLike) -> list[Path]:
    """The image files in ``model_dir/samples/``, sorted by name (empty when there are none)."""
    from .images import image_files  # here: the CLI reads this module before it needs PIL

    folder = Path(model_dir) / "samples"
    return image_files(folder)[0] if folder.is_dir() else []


def default_sample_images() -> list[Path]:
    """The sample digits shipped with the default model (held-out MNIST test images, PNG)."""
    images = sample_images(default_model_path())
    if not images:
        raise MoXIError(f"the default model at {str(default_model_path())!r} has no samples/ images; pass --image")
    return images
