"""Where the embedded models (tiny ViTs and a tiny CLIP trained on MNIST digits) and their sample images live.

Each model's one copy is ``models/<name>/`` in the repository. A wheel (``pip install .``, a package
index) carries them inside the package as ``moxi_hf/models/<name>/``; a source checkout or an
editable install reads them from ``models/``. The default model is ``moxi-vit-mnist``;
``MOXI_DEFAULT_MODEL`` (a model folder) overrides it. A shipped model can be named by its name alone
(``--model moxi-clip-mnist``) from any directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MoXIError

__all__ = ["DEFAULT_MODEL_NAME", "DEFAULT_MODEL_ENV", "SHIPPED_MODELS", "default_model_path", "default_sample_images",
           "model_folder", "sample_images", "shipped_model_path"]

DEFAULT_MODEL_NAME = "moxi-vit-mnist"
#: the models shipped with the package: the default classifier, a 196-player one and a zero-shot CLIP
SHIPPED_MODELS = (DEFAULT_MODEL_NAME, "moxi-vit-mnist-196", "moxi-clip-mnist")
#: environment variable that overrides the default model folder
DEFAULT_MODEL_ENV = "MOXI_DEFAULT_MODEL"


def _shipped_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Inside the installed package (a wheel), else ``models/`` of the source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "models" / name
    return installed if installed.is_dir() else package.parent / "models" / name


def shipped_model_path(name: str) -> Path | None:
    """The folder of the model shipped with the package under ``name`` (:data:`SHIPPED_MODELS`), or None."""
    if name not in SHIPPED_MODELS:
        return None
    path = _shipped_model_path(name)
    return path if (path / "config.json").is_file() else None


def model_folder(name: str | os.PathLike) -> Path | None:
    """The local folder a ``--model`` value names: an existing folder, else a shipped model's; None for a Hub id."""
    path = Path(name).expanduser()
    return path if path.is_dir() else shipped_model_path(os.fspath(name))


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
