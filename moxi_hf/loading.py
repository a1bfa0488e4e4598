"""One loader: any HF image classifier + its processor + the right removal adapter."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
from transformers.utils import logging as hf_logging

from .errors import MoXIError
from .modeling import TOKEN_CLASSES, TokenRemovalClassifier
from .modeling import TOKEN_MODEL_TYPES as _TOKEN_MODEL_CLASSES
from .options import MASKINGS
from .players import as_pair
from .removal import PixelMasking, RemovalAdapter, TokenRemoval
from .sources import resolve_model_source

__all__ = [
    "ExplainableModel",
    "load_explainable_model",
    "TOKEN_MODEL_TYPES",
    "resolve_dtype",
    "saved_dtype",
    "DEFAULT_PIXEL_GRID",
    "adapter_for",
    "as_token_model",
    "build_adapter",
    "output_rule",
    "with_output_rule",
    "uses_token_removal",
]

#: Model types that get token removal.
TOKEN_MODEL_TYPES = tuple(_TOKEN_MODEL_CLASSES)
#: Pixel-masking grid (players) for models without patch tokens (CNNs, Swin): 7×7 cells.
DEFAULT_PIXEL_GRID = (7, 7)
#: Model types whose attention class is fixed when the model is built: loaded with eager attention so
#: attention-rollout gets attention weights.
_EAGER_MODEL_TYPES = ("data2vec-vision",)
#: dtype name (those of :data:`moxi_hf.options.DTYPES` and their short forms) -> torch dtype
TORCH_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise MoXIError(f"dtype must be float32 or bfloat16, got {dtype}")
        return dtype
    if dtype not in TORCH_DTYPES:
        raise MoXIError(f"unknown dtype {dtype!r}; choose float32 or bfloat16")
    return TORCH_DTYPES[dtype]


def saved_dtype(config) -> torch.dtype:
    """``dtype="auto"``: the dtype a checkpoint was saved in when moxi explains in it (float32, bfloat16), else
    float32 (a float16 checkpoint is explained in float32)."""
    saved = getattr(config, "dtype", None)
    saved = getattr(torch, saved, None) if isinstance(saved, str) else saved
    return saved if saved in (torch.float32, torch.bfloat16) else torch.float32


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


def _token_class(config) -> type[TokenRemovalClassifier]:
    for name in config.architectures or []:
        if name in TOKEN_CLASSES:
            return TOKEN_CLASSES[name]
    return _TOKEN_MODEL_CLASSES[config.model_type]


def uses_token_removal(model_type: str | None, masking: str) -> bool:
    """The one masking decision: token removal for ViT-family models (auto/token), pixel masking otherwise.

    Raises :class:`MoXIError` for an unknown ``masking`` or ``"token"`` on a model without patch tokens.
    """
    if masking not in MASKINGS:
        raise MoXIError(f"unknown masking {masking!r}; choose one of {', '.join(MASKINGS)}")
    has_tokens = model_type in TOKEN_MODEL_TYPES
    if masking == "token" and not has_tokens:
        raise MoXIError(
            f"token masking needs a model with patch tokens, a ViT-family one ({', '.join(TOKEN_MODEL_TYPES)}), "
            f"got a {model_type!r} model; use masking='pixel'"
        )
    return has_tokens and masking != "pixel"


def as_token_model(model: torch.nn.Module) -> TokenRemovalClassifier:
    """A stock ViT-family classifier as its MoXI subclass, sharing its weights (no copy).

    The subclass is built on the meta device (no memory) and its parameters and buffers are then
    the stock model's own tensors; the stock model keeps its class, config and mode.
    """
    if isinstance(model, TokenRemovalClassifier):
        return model
    target = TOKEN_CLASSES.get(type(model).__name__)
    if target is None:
        raise MoXIError(
            f"token masking needs a ViT-family classifier with patch tokens, got {type(model).__name__}; "
            "use masking='pixel'"
        )
    with torch.device("meta"):
        converted = target(copy.deepcopy(model.config))
    state = model.state_dict()
    converted.load_state_dict(state, assign=True)
    for name, buffer in model.named_buffers():
        if name not in state:  # non-persistent buffers are not in the state dict
            owner, _, leaf = name.rpartition(".")
            converted.get_submodule(owner).register_buffer(leaf, buffer, persistent=False)
    left = [name for name, tensor in (*converted.named_parameters(), *converted.named_buffers()) if tensor.is_meta]
    if left:
        raise MoXIError(f"{type(model).__name__} could not be shared with {target.__name__}: {', '.join(left[:3])} missing")
    return converted.eval()


def build_adapter(
    model: torch.nn.Module,
    masking: str = "auto",
    grid: int | tuple[int, int] | None = None,
    baseline: str = "zero",
    image_size: tuple[int, int] | None = None,
    interpolate_pos_encoding: bool = False,
    players_grid: int | tuple[int, int] | None = None,
) -> RemovalAdapter:
    """The removal adapter for an already loaded model (token removal or pixel masking, see :func:`uses_token_removal`).

    ``grid`` is the pixel-masking cell grid (default: the patch grid of a ViT-family model, else
    ``players_grid`` when given, else :data:`DEFAULT_PIXEL_GRID`); token removal always works on the
    patch grid.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if uses_token_removal(model_type, masking) or (masking == "token" and isinstance(model, TokenRemovalClassifier)):
        adapter = TokenRemoval(as_token_model(model), interpolate_pos_encoding=interpolate_pos_encoding,
                               image_size=image_size)
        if grid is not None and as_pair(grid) != adapter.grid:
            raise MoXIError(
                f"token removal works on the model's {adapter.grid[0]}x{adapter.grid[1]} patch grid; "
                "use players_grid for coarser players"
            )
        return with_output_rule(adapter, getattr(model, "config", None))
    if grid is None:
        config = getattr(model, "config", None)
        patch = getattr(config, "patch_size", None)
        if image_size is None and isinstance(getattr(config, "image_size", None), int):
            image_size = as_pair(config.image_size)
        if model_type in TOKEN_MODEL_TYPES and image_size and isinstance(patch, int):
            grid = (image_size[0] // patch, image_size[1] // patch)
        else:
            grid = players_grid or DEFAULT_PIXEL_GRID
    return with_output_rule(PixelMasking(model, as_pair(grid), baseline=baseline), getattr(model, "config", None))


def output_rule(config) -> tuple[str, str]:
    """(link, decision) of a classifier, read from its config as transformers' image-classification pipeline
    reads it: a sigmoid per class, the label predicted when p > 0.5, for ``problem_type ==
    "multi_label_classification"`` or a single logit; a softmax and the top class otherwise. A regression
    checkpoint (no probability at all) is refused."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        raise MoXIError("this checkpoint is a regression model (problem_type='regression'): its outputs are not "
                        "class scores, so there is no label to explain")
    if problem == "multi_label_classification" or int(getattr(config, "num_labels", 2)) == 1:
        return "sigmoid", "threshold"
    return "softmax", "argmax"


def with_output_rule(adapter: RemovalAdapter, config, rule: tuple[str, str] | None = None) -> RemovalAdapter:
    """``adapter`` reading logits by ``rule`` (link, decision), by default :func:`output_rule` of ``config``."""
    adapter.link, adapter.decision = rule or output_rule(config)
    return adapter


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
    players_grid: int | tuple[int, int] | None = None,
    trust_remote_code: bool = False,
    **from_pretrained_kwargs,
) -> ExplainableModel:
    """Load a classifier from a local folder or a Hub id and pick its removal adapter.

    ``masking="auto"`` uses token removal for ViT-family checkpoints (:data:`TOKEN_MODEL_TYPES`) and
    pixel masking for every other classifier; ``"token"`` on a model without patch tokens is an
    error. ``grid`` is the pixel-masking cell grid (default: a ViT's patch grid, or
    :data:`DEFAULT_PIXEL_GRID` for models without patch tokens, or ``players_grid`` when given).
    ``dtype``: float32 (default), bfloat16, or ``"auto"`` (:func:`saved_dtype`).
    ``trust_remote_code``: run Python code shipped with the model (its ``auto_map``); without it, a
    model that cannot load without its own code is refused in one line, and nobody is asked on stdin.
    """
    if masking not in MASKINGS:
        raise MoXIError(f"unknown masking {masking!r}; choose one of {', '.join(MASKINGS)}")
    auto_dtype = isinstance(dtype, str) and dtype == "auto"
    dtype = None if auto_dtype else resolve_dtype(dtype)
    device = resolve_device(device)
    name = resolve_model_source(path_or_id, local_files_only=from_pretrained_kwargs.get("local_files_only", False))
    trust = bool(trust_remote_code)
    from_pretrained_kwargs.pop("trust_remote_code", None)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust, **from_pretrained_kwargs)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds here
        _refuse_remote_code(name, error, trust)
        raise MoXIError(f"could not load a model config from {name!r}: {error}") from None
    use_tokens = uses_token_removal(config.model_type, masking)
    dtype = saved_dtype(config) if auto_dtype else dtype
    kwargs = dict(from_pretrained_kwargs)
    if use_tokens:
        eager = config.model_type in _EAGER_MODEL_TYPES
        kwargs.setdefault("attn_implementation", "eager" if eager else attn_implementation)
    try:
        if use_tokens:
            model = _token_class(config).from_pretrained(name, dtype=dtype, trust_remote_code=trust, **kwargs)
        else:
            model = AutoModelForImageClassification.from_pretrained(name, dtype=dtype, trust_remote_code=trust,
                                                                    **kwargs)
    except ValueError as error:
        _refuse_remote_code(name, error, trust)
        raise MoXIError(f"{name!r} is not an image classifier: {error}") from None
    except OSError as error:
        raise MoXIError(f"could not load model weights from {name!r}: {error}") from None
    model.to(device).eval()
    try:
        processor = _load_processor(name, from_pretrained_kwargs, trust)
    except Exception as error:  # noqa: BLE001
        _refuse_remote_code(name, error, trust)
        raise MoXIError(f"could not load the image processor of {name!r}: {error}") from None
    adapter = adapter_for(model, processor, masking, grid, baseline, players_grid)
    return ExplainableModel(model, processor, adapter, name)


def adapter_for(
    model: torch.nn.Module,
    processor,
    masking: str = "auto",
    grid: int | tuple[int, int] | None = None,
    baseline: str = "zero",
    players_grid: int | tuple[int, int] | None = None,
) -> RemovalAdapter:
    """:func:`build_adapter` for a loaded model and its image processor: token removal interpolates the
    position embeddings when the processor's image size differs from the one the model was trained on."""
    config = model.config
    size = _image_size(processor, config)
    config_size = as_pair(config.image_size) if isinstance(getattr(config, "image_size", None), int) else None
    use_tokens = uses_token_removal(config.model_type, masking)
    interpolate = use_tokens and size is not None and config_size is not None and size != config_size
    return build_adapter(model, masking, grid, baseline, size, interpolate, players_grid)


def _refuse_remote_code(name: str, error: Exception, trusted: bool) -> None:
    """One line for a model that cannot load without running its own code (transformers' error asks for
    ``trust_remote_code=True``); returns when ``error`` is about something else."""
    if not trusted and "trust_remote_code" in str(error):
        raise MoXIError(f"the model {name!r} needs its own Python code to load (auto_map in its config), and moxi "
                        "never runs a model's code unless asked: if you trust its authors, pass "
                        "--trust-remote-code (trust_remote_code=True in Python)") from None


def _load_processor(name: str, kwargs: dict, trust_remote_code: bool):
    # Without torchvision the fast processors are unavailable and transformers logs a warning
    # on every load; the slow (PIL) processor gives the same tensors.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        hub_kwargs = {k: v for k, v in kwargs.items() if k in ("token", "revision", "cache_dir", "local_files_only")}
        return AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code, **hub_kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
