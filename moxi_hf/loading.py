"""One loader: any HF image classifier or CLIP/SigLIP zero-shot model + its processor + the right removal adapter.

Which game a checkpoint plays is decided by the checkpoint (:mod:`moxi_hf.kinds`): a trained
classification head is a classifier, ``CLIPModel``/``SiglipModel`` is zero-shot (candidate labels
named by text), and weights transformers would have to initialise are refused.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from .errors import MoXIError
from .kinds import (
    ZERO_SHOT,
    ZERO_SHOT_CLASSES,
    check_loaded_weights,
    checkpoint_kind,
    is_image_text_type,
    refusal,
    zero_shot_class,
    zero_shot_weights,
)
from .modeling import TOKEN_CLASSES, TokenRemovalClassifier, TokenRemovalImageText
from .modeling import TOKEN_MODEL_TYPES as _TOKEN_MODEL_CLASSES
from .options import MASKINGS
from .players import as_pair
from .removal import PixelMasking, RemovalAdapter, TokenRemoval
from .sources import resolve_model_source
from .zero_shot import CandidateText, ZeroShotRemoval, default_candidates, refuse_classifier_labels

__all__ = [
    "EXPLAINED_DTYPES",
    "ExplainableModel",
    "load_explainable_model",
    "TOKEN_MODEL_TYPES",
    "resolve_dtype",
    "saved_dtype",
    "DEFAULT_PIXEL_GRID",
    "adapter_for",
    "as_token_model",
    "build_adapter",
    "build_zero_shot_adapter",
    "zero_shot_adapter_for",
    "is_zero_shot_model",
    "output_rule",
    "quiet_transformers",
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
#: the dtypes moxi explains in
EXPLAINED_DTYPES = (torch.float32, torch.bfloat16)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in EXPLAINED_DTYPES:
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
    return saved if saved in EXPLAINED_DTYPES else torch.float32


def resolve_device(device: str | torch.device | None) -> torch.device:
    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MoXIError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


@dataclass
class ExplainableModel:
    """A loaded classifier or zero-shot model, its image processor, the removal adapter chosen for it and, for a
    zero-shot model, its tokenizer (which reads the candidate labels)."""

    model: torch.nn.Module
    processor: object
    adapter: RemovalAdapter
    name: str
    tokenizer: object | None = None

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


def as_token_model(model: torch.nn.Module) -> TokenRemovalClassifier | TokenRemovalImageText:
    """A stock ViT-family classifier (or CLIP/SigLIP model) as its MoXI subclass, sharing its parameters and
    buffers: the same tensors, no copy (a pipeline's model and the explainer hold one set of weights)."""
    if isinstance(model, (TokenRemovalClassifier, TokenRemovalImageText)):
        return model
    target = TOKEN_CLASSES.get(type(model).__name__)
    if target is None:
        raise MoXIError(
            f"token masking needs a ViT-family classifier with patch tokens, got {type(model).__name__}; "
            "use masking='pixel'"
        )
    with torch.device("meta"):  # built without memory, then given the stock model's own tensors
        converted = target(copy.deepcopy(model.config))  # its own config: the stock model's stays as it was
    stock = dict(model.named_modules())
    for name, module in converted.named_modules():
        source = stock[name]  # the MoXI class keeps the parent's module names
        for key in module._parameters:
            module._parameters[key] = source._parameters[key]
        for key in module._buffers:
            module._buffers[key] = source._buffers[key]
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
    config = getattr(model, "config", None)
    reason = refusal(config) if config is not None else None
    if reason:
        raise MoXIError(reason)
    if is_zero_shot_model(model):
        raise MoXIError(f"{type(model).__name__} is a zero-shot image-text model: it needs its tokenizer and "
                        "candidate labels (build_zero_shot_adapter, or Explainer(model, processor, tokenizer=...))")
    model_type = getattr(config, "model_type", None)
    if uses_token_removal(model_type, masking) or (masking == "token" and isinstance(model, TokenRemovalClassifier)):
        adapter = TokenRemoval(as_token_model(model), interpolate_pos_encoding=interpolate_pos_encoding,
                               image_size=image_size)
        if grid is not None and as_pair(grid) != adapter.grid:
            raise MoXIError(
                f"token removal works on the model's {adapter.grid[0]}x{adapter.grid[1]} patch grid; "
                "use players_grid for coarser players"
            )
        return with_output_rule(adapter, config)
    if grid is None:
        patch = getattr(config, "patch_size", None)
        if image_size is None and isinstance(getattr(config, "image_size", None), int):
            image_size = as_pair(config.image_size)
        if model_type in TOKEN_MODEL_TYPES and image_size and isinstance(patch, int):
            grid = (image_size[0] // patch, image_size[1] // patch)
        else:
            grid = players_grid or DEFAULT_PIXEL_GRID
    return with_output_rule(PixelMasking(model, as_pair(grid), baseline=baseline), config)


def is_zero_shot_model(model: torch.nn.Module) -> bool:
    """A CLIP or SigLIP image-text model (stock ``CLIPModel``/``SiglipModel`` or its MoXI subclass)."""
    return isinstance(model, TokenRemovalImageText) or any(
        base.__name__ in ZERO_SHOT_CLASSES and base.__module__.startswith("transformers.")
        for base in type(model).__mro__)


def build_zero_shot_adapter(
    model: torch.nn.Module,
    tokenizer,
    candidate_labels: Sequence[str] | None = None,
    hypothesis_template: str | Sequence[str] | None = None,
    masking: str = "auto",
    image_size: tuple[int, int] | None = None,
    interpolate_pos_encoding: bool = False,
    recorded: bool = True,
) -> ZeroShotRemoval:
    """The zero-shot adapter of a CLIP/SigLIP model (stock or MoXI; a stock one is shared, not copied).

    Labels and template default to those the model's config records (``moxi_candidate_labels``,
    ``moxi_hypothesis_template``); without labels anywhere the adapter has none yet, and each call
    names its own (``recorded=False`` ignores what the config records, as a pipeline does). Zero-shot
    models are explained by token removal only.
    """
    if masking == "pixel":
        raise MoXIError("zero-shot models (CLIP, SigLIP) are explained by token removal only; "
                        "drop masking='pixel'")
    if masking not in MASKINGS:
        raise MoXIError(f"unknown masking {masking!r}; choose one of {', '.join(MASKINGS)}")
    if tokenizer is None:
        raise MoXIError("a zero-shot model needs its tokenizer to read the candidate labels (tokenizer=...)")
    model = as_token_model(model)
    defaults = default_candidates(model.config) if recorded else None
    if candidate_labels is None and defaults is not None:
        candidate_labels = defaults[0]
        hypothesis_template = hypothesis_template if hypothesis_template is not None else defaults[1]
    elif hypothesis_template is None and defaults is not None:
        hypothesis_template = defaults[1]
    if candidate_labels is None:
        text = CandidateText.empty(hypothesis_template)
    else:
        text = CandidateText.build(model, tokenizer, candidate_labels, hypothesis_template)
    return ZeroShotRemoval(model, text, interpolate_pos_encoding=interpolate_pos_encoding, image_size=image_size)


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
    candidate_labels: Sequence[str] | None = None,
    hypothesis_template: str | Sequence[str] | None = None,
    **from_pretrained_kwargs,
) -> ExplainableModel:
    """Load a classifier or a CLIP/SigLIP zero-shot model from a local folder or a Hub id and pick its removal adapter.

    ``masking="auto"`` uses token removal for ViT-family checkpoints (:data:`TOKEN_MODEL_TYPES`) and
    pixel masking for every other classifier; ``"token"`` on a model without patch tokens is an
    error. ``grid`` is the pixel-masking cell grid (default: a ViT's patch grid, or
    :data:`DEFAULT_PIXEL_GRID` for models without patch tokens, or ``players_grid`` when given).
    ``dtype``: float32 (default), bfloat16, or ``"auto"`` (:func:`saved_dtype`).
    ``candidate_labels``/``hypothesis_template``: a zero-shot model's classes, named by text (default:
    those its config records; see :func:`build_zero_shot_adapter`); refused for a classifier.
    ``trust_remote_code``: run Python code shipped with the model (its ``auto_map``); without it, a
    model that cannot load without its own code is refused in one line, and nobody is asked on stdin.
    A checkpoint whose weights transformers would have to initialise (a classifier without its head)
    is refused in one line (:func:`moxi_hf.kinds.check_loaded_weights`).
    """
    if masking not in MASKINGS:
        raise MoXIError(f"unknown masking {masking!r}; choose one of {', '.join(MASKINGS)}")
    auto_dtype = isinstance(dtype, str) and dtype == "auto"
    dtype = None if auto_dtype else resolve_dtype(dtype)
    device = resolve_device(device)
    name = resolve_model_source(path_or_id, local_files_only=from_pretrained_kwargs.get("local_files_only", False))
    trust = bool(trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust, **from_pretrained_kwargs)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds here
        _refuse_remote_code(name, error, trust)
        raise MoXIError(f"could not load a model config from {name!r}: {error}") from None
    kind = checkpoint_kind(config)
    labelled = candidate_labels is not None or hypothesis_template is not None
    if kind != ZERO_SHOT and labelled and not is_image_text_type(config):
        refuse_classifier_labels(name, config.num_labels)
    if masking == "pixel" and (kind == ZERO_SHOT or labelled):
        raise MoXIError("zero-shot models (CLIP, SigLIP) are explained by token removal only; "
                        "drop masking='pixel'")
    use_tokens = kind == ZERO_SHOT or uses_token_removal(config.model_type, masking)
    dtype = saved_dtype(config) if auto_dtype else dtype
    kwargs = dict(from_pretrained_kwargs)
    if use_tokens:
        eager = config.model_type in _EAGER_MODEL_TYPES
        kwargs.setdefault("attn_implementation", "eager" if eager else attn_implementation)
    if kind == ZERO_SHOT:
        model_class = zero_shot_class(config)
    else:
        model_class = _token_class(config) if use_tokens else AutoModelForImageClassification
    model, info = _load_weights(name, model_class, dtype, trust, kwargs)
    if kind != ZERO_SHOT and labelled:  # a CLIP/SigLIP config naming a classifier: its weights decide
        if not zero_shot_weights(info):
            refuse_classifier_labels(name, config.num_labels)
        kind = ZERO_SHOT
        model, info = _load_weights(name, zero_shot_class(config), dtype, trust, kwargs)
    check_loaded_weights(name, config, info, kind)
    zero_shot = kind == ZERO_SHOT
    model.to(device).eval()
    processor = _load_part(name, "image processor", AutoImageProcessor, from_pretrained_kwargs, trust)
    tokenizer = _load_part(name, "tokenizer", AutoTokenizer, from_pretrained_kwargs, trust) if zero_shot else None
    if zero_shot:
        adapter = zero_shot_adapter_for(model, processor, tokenizer, candidate_labels, hypothesis_template, masking,
                                        grid)
    else:
        adapter = adapter_for(model, processor, masking, grid, baseline, players_grid)
    return ExplainableModel(model, processor, adapter, name, tokenizer)


def _load_weights(name: str, model_class, dtype: torch.dtype, trust: bool, kwargs: dict) -> tuple[torch.nn.Module, dict]:
    """(model, loading info): transformers' load report is read (check_loaded_weights), not printed."""
    try:
        with quiet_transformers():
            return model_class.from_pretrained(name, dtype=dtype, trust_remote_code=trust, output_loading_info=True,
                                               **kwargs)
    except ValueError as error:
        _refuse_remote_code(name, error, trust)
        raise MoXIError(f"{name!r} is not an image classifier: {error}") from None
    except OSError as error:
        raise MoXIError(f"could not load model weights from {name!r}: {error}") from None


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
    size, interpolate = _input_size(processor, model.config)
    interpolate = interpolate and uses_token_removal(model.config.model_type, masking)
    return build_adapter(model, masking, grid, baseline, size, interpolate, players_grid)


def zero_shot_adapter_for(
    model: torch.nn.Module,
    processor,
    tokenizer,
    candidate_labels: Sequence[str] | None = None,
    hypothesis_template: str | Sequence[str] | None = None,
    masking: str = "auto",
    grid: int | tuple[int, int] | None = None,
    recorded: bool = True,
) -> ZeroShotRemoval:
    """:func:`build_zero_shot_adapter` for a loaded CLIP/SigLIP model and its image processor (position embeddings
    interpolated when the processor's size differs from the vision tower's); ``grid``, if given, must be the
    patch grid."""
    size, interpolate = _input_size(processor, model.config.vision_config)
    adapter = build_zero_shot_adapter(model, tokenizer, candidate_labels, hypothesis_template, masking, size,
                                      interpolate, recorded)
    if grid is not None and as_pair(grid) != adapter.grid:
        raise MoXIError(f"token removal works on the model's {adapter.grid[0]}x{adapter.grid[1]} patch grid; "
                        "use players_grid for coarser players")
    return adapter


def _input_size(processor, config) -> tuple[tuple[int, int] | None, bool]:
    """(the processor's image size, whether it differs from the one the (vision) ``config`` was trained on)."""
    size = _image_size(processor, config)
    config_size = as_pair(config.image_size) if isinstance(getattr(config, "image_size", None), int) else None
    return size, size is not None and config_size is not None and size != config_size


def _refuse_remote_code(name: str, error: Exception, trusted: bool) -> None:
    """One line for a model that cannot load without running its own code (transformers' error asks for
    ``trust_remote_code=True``); returns when ``error`` is about something else."""
    if not trusted and "trust_remote_code" in str(error):
        raise MoXIError(f"the model {name!r} needs its own Python code to load (auto_map in its config), and moxi "
                        "never runs a model's code unless asked: if you trust its authors, pass "
                        "--trust-remote-code (trust_remote_code=True in Python)") from None


@contextlib.contextmanager
def quiet_transformers():
    """transformers' logging at error level for a while: its load reports and its note that the fast image
    processors need torchvision (the slow PIL processor gives the same tensors) are not for the user."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _load_part(name: str, what: str, auto_class, kwargs: dict, trust_remote_code: bool):
    """The model's image processor or tokenizer (``auto_class``), quietly; one line when it cannot be loaded."""
    hub_kwargs = {k: v for k, v in kwargs.items() if k in ("token", "revision", "cache_dir", "local_files_only")}
    try:
        with quiet_transformers():
            return auto_class.from_pretrained(name, trust_remote_code=trust_remote_code, **hub_kwargs)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds here
        _refuse_remote_code(name, error, trust_remote_code)
        raise MoXIError(f"could not load the {what} of {name!r}: {error}") from None
