"""What one evaluation run needs: :class:`EvaluationConfig` and its defaults."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..defaults import DEFAULT_MODEL_NAME
from ..errors import MoXIError
from ..options import (
    CURVES,
    DEFAULT_DATASET,
    DEFAULT_INTERACTION_TOP,
    DEFAULT_NUM_IMAGES,
    METHOD_NAMES,
    METHOD_OPTIONS,
)

__all__ = ["DEFAULT_DATASET", "DEFAULT_MODEL", "DEFAULT_NUM_IMAGES", "EvaluationConfig", "default_model",
           "method_options"]

#: The name of the embedded default model, used when no model is given (its folder: :func:`default_model`).
DEFAULT_MODEL = DEFAULT_MODEL_NAME


def default_model() -> str:
    """The default model: ``moxi_hf.defaults.default_model_path()``, as ``moxi explain`` (MoXIError when missing)."""
    from ..defaults import default_model_path

    return os.fspath(default_model_path())


@dataclass
class EvaluationConfig:
    """Everything one evaluation run needs. ``None`` fields get their documented default."""

    output_dir: str
    model: str | None = None  # default: :func:`default_model`
    dataset: str = DEFAULT_DATASET  # Hub dataset id or a local folder (imagefolder)
    split: str | None = None  # default: validation (a local folder with one split: that split)
    streaming: bool = False
    shuffle_buffer: int = 1000  # streaming only: size of the shuffle buffer
    image_column: str = "image"
    label_column: str = "label"
    methods: Sequence[str] | None = None  # default: every method the model supports
    curves: Sequence[str] = CURVES
    num_images: int | None = None  # default 100 (without per_class)
    per_class: int | None = None  # first K correct images of every class
    seed: int = 0
    num_samples: int = 200  # full-shapley samples per player
    masking: str = "auto"
    reward: str = "log-odds"
    players_grid: int | tuple[int, int] | None = None
    dtype: str = "float32"
    device: str | None = None  # None/"auto": the process's accelerator (Accelerate), "cpu" forces CPU
    batch_size: int = 8  # images explained together
    overwrite: bool = False
    quiet: bool = False
    embed_images: bool = False  # a Hub dataset's pictures in the output (local datasets: always)
    push_to_hub: str | None = None  # dataset repo (USER/NAME) to upload the finished folder to
    hub_private: bool = False  # create that repo as private
    interactions: bool = False  # MoXI rows also get gains and the interaction map (moxi_hf.interactions)
    interaction_top: int = DEFAULT_INTERACTION_TOP  # K: players of the order in the interaction map (at least 2)
    trust_remote_code: bool = False  # run Python code shipped with the model (never unless asked)

    def validate(self) -> None:
        if self.num_images is not None and self.per_class is not None:
            raise MoXIError("give either --num-images or --per-class, not both")
        for name in ("num_images", "per_class", "batch_size", "num_samples", "shuffle_buffer"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise MoXIError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.interaction_top, bool) or not isinstance(self.interaction_top, int) \
                or self.interaction_top < 2:
            raise MoXIError(f"interaction-top must be an integer of at least 2, got {self.interaction_top!r}")
        for curve in self.curves:
            if curve not in CURVES:
                raise MoXIError(f"unknown curve {curve!r}; choose insertion and/or deletion")
        if not self.curves or len(set(self.curves)) != len(self.curves):
            raise MoXIError("curves must be a non-empty list without repeats")
        if self.methods is not None:
            for method in self.methods:
                if method not in METHOD_NAMES:
                    raise MoXIError(f"unknown method {method!r}; choose among {', '.join(METHOD_NAMES)}")
            if not self.methods or len(set(self.methods)) != len(self.methods):
                raise MoXIError("methods must be a non-empty list without repeats")



def method_options(name: str, config: EvaluationConfig) -> dict:
    """The options of method ``name`` taken from the config fields of the same name (declared per method)."""
    return {option.name: getattr(config, option.name) for option in METHOD_OPTIONS.get(name, ())
            if option.curve_safe and option.cli and hasattr(config, option.name)}
