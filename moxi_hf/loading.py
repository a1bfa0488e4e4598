"""One loader: any HF image classifier + its processor + the right removal adapter."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
from transformers.utils import logging as hf_logging

from .errors import MoXIError
from .modeling import (
    MoXIDeiTForImageClassification,
    MoXIDeiTForImageClassificationWithTeacher,
    MoXIViTForImageClassification,
)
from .options import MASKINGS
from .removal import PixelMasking, RemovalAdapter, TokenRemoval

__all__ = ["ExplainableModel", "load_explainable_model", "TOKEN_MODEL_TYPES", "resolve_dtype", "DEFAULT_PIXEL_GRID"]

TOKEN_MODEL_TYPES = ("vit", "deit")
#: Pixel-masking grid for models without patches: 14×14 cells, as ViT-B/16 at 224 px.
DEFAULT_PIXEL_GRID = (14, 14)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise MoXIError(f"dtype must be float32 or bfloat16, got {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise MoXIError(f"unknown dtype {dtype!r}; choose float32 or bfloat16")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device | None) -> torch.device:
    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MoXIError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


@dataclass
class ExplainableModel:
    """A loaded classifier, its image processor and the removal adapter chosen for it."""

    model: torch.nn.Module
    processor: object
    adapter: RemovalAdapter
    name: str

    def __iter__(self):
        return iter((self.model, self.processor, self.adapter))


def _token_class(config) -> type:
    architectures = config.architectures or []
    if config.model_type == "deit":
        if any("WithTeacher" in name for name in architectures):
            return MoXIDeiTForImageClassificationWithTeacher
        return MoXIDeiTForImageClassification
    return MoXIViTForImageClassification


def _image_size(processor, config) -> tuple[int, int] | None:
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if isinstance(size, dict) and "height" in size and "width" in size:
        return (int(size["height"]), int(size["width"]))
    image_size = getattr(config, "image_size", None)
    if isinstance(image_size, int):
        return (image_size, image_size)
    return None


def load_explainable_model(
    path_or_id: str | os.PathLike,
    masking: str = "auto",
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    grid: int | tuple[int, int] | None = None,
    baseline: str = "zero",
    attn_implementation: str = "sdpa",
    **from_pretrained_kwargs,
) -> ExplainableModel:
    """Load a classifier from a local folder or a Hub id and pick its removal adapter.

    ``masking="auto"`` uses token removal for ViT/DeiT checkpoints and pixel masking for every
    other classifier; ``"token"`` on a model without patch tokens is an error. ``grid`` is the
    pixel-masking cell grid (default: the model's patch grid, or 14×14 for models without patches).
    """
    if masking not in MASKINGS:
        raise MoXIError(f"unknown masking {masking!r}; choose one of {', '.join(MASKINGS)}")
    dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    name = os.fspath(path_or_id)
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.rstrip(os.sep) and name.count("/") != 1
    if looks_local and not os.path.exists(os.path.expanduser(name)):
        raise MoXIError(f"model path {name!r} does not exist")
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        raise MoXIError(f"{name!r} is not a model folder: it has no config.json")
    try:
        config = AutoConfig.from_pretrained(name, **from_pretrained_kwargs)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds here
        raise MoXIError(f"could not load a model config from {name!r}: {error}") from None
    has_tokens = config.model_type in TOKEN_MODEL_TYPES
    if masking == "token" and not has_tokens:
        raise MoXIError(
            f"token masking needs a model with patch tokens (ViT or DeiT), but {name!r} is a "
            f"{config.model_type!r} model; use masking='pixel'"
        )
    use_tokens = has_tokens and masking in ("auto", "token")
    kwargs = dict(from_pretrained_kwargs)
    if use_tokens:
        kwargs.setdefault("attn_implementation", attn_implementation)
    try:
        if use_tokens:
            model = _token_class(config).from_pretrained(name, dtype=dtype, **kwargs)
        else:
            model = AutoModelForImageClassification.from_pretrained(name, dtype=dtype, **kwargs)
    except ValueError as error:
        raise MoXIError(f"{name!r} is not an image classifier: {error}") from None
    except OSError as error:
        raise MoXIError(f"could not load model weights from {name!r}: {error}") from None
    model.to(device).eval()
    try:
        processor = _load_processor(name, from_pretrained_kwargs)
    except Exception as error:  # noqa: BLE001
        raise MoXIError(f"could not load the image processor of {name!r}: {error}") from None
    if use_tokens:
        size = _image_size(processor, config)
        config_size = (config.image_size, config.image_size) if isinstance(config.image_size, int) else None
        interpolate = size is not None and config_size is not None and size != config_size
        adapter: RemovalAdapter = TokenRemoval(model, interpolate_pos_encoding=interpolate, image_size=size)
        if grid is not None and tuple(grid if not isinstance(grid, int) else (grid, grid)) != adapter.grid:
            raise MoXIError(
                f"token removal works on the model's {adapter.grid[0]}x{adapter.grid[1]} patch grid; "
                "use players_grid for coarser players"
            )
    else:
        if grid is None:
            patch = getattr(config, "patch_size", None)
            size = _image_size(processor, config)
            grid = (size[0] // patch, size[1] // patch) if isinstance(patch, int) and size else DEFAULT_PIXEL_GRID
        grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
        adapter = PixelMasking(model, grid, baseline=baseline)
    return ExplainableModel(model, processor, adapter, name)


def _load_processor(name: str, kwargs: dict):
    # Without torchvision the fast processors are unavailable and transformers logs a warning
    # on every load; the slow (PIL) processor gives the same tensors.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        hub_kwargs = {k: v for k, v in kwargs.items() if k in ("token", "revision", "cache_dir", "local_files_only")}
        return AutoImageProcessor.from_pretrained(name, **hub_kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
