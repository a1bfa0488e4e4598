"""What one evaluation run needs: :class:`EvaluationConfig`, its defaults, and the options of each method.

The methods' options (``seed``, ``num_samples``, ...) are not restated here: every option a method
declares in :data:`moxi_hf.options.METHOD_OPTIONS` that keeps orders complete and has a flag becomes
a field of the config, with the declared type and default (as ``moxi evaluate``'s flags do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, make_dataclass

from ..errors import MoXIError
from ..options import (
    CURVES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_INTERACTION_TOP,
    DEFAULT_NUM_IMAGES,
    DEFAULT_REWARD,
    METHOD_NAMES,
    METHOD_OPTIONS,
    Option,
    check_curve,
    with_budget_resolved,
)

__all__ = ["DEFAULT_DATASET", "DEFAULT_NUM_IMAGES", "EvaluationConfig", "method_options"]


def _evaluated_options() -> dict[str, Option]:
    """name -> option, for the options an evaluation sets (curve-safe, with a flag), from every method."""
    found: dict[str, Option] = {}
    for options in METHOD_OPTIONS.values():
        for option in options:
            if option.curve_safe and option.cli:
                found.setdefault(option.name, option)
    return found


#: name -> option of every method option an evaluation sets (a field of :data:`EvaluationConfig` each)
_EVALUATED_OPTIONS = _evaluated_options()


@dataclass
class _EvaluationSettings:
    """Everything one evaluation run needs except the methods' options. ``None`` fields get their documented default."""

    output_dir: str
    model: str | None = None  # default: moxi_hf.defaults.default_model_path() (honours MOXI_DEFAULT_MODEL)
    dataset: str = DEFAULT_DATASET  # Hub dataset id or a local folder (imagefolder)
    split: str | None = None  # default: validation (a local folder with one split: that split)
    streaming: bool = False
    shuffle_buffer: int = 1000  # streaming only: size of the shuffle buffer
    image_column: str = "image"
    label_column: str = "label"
    methods: Sequence[str] | None = None  # default: every method the model supports
    curves: Sequence[str] = CURVES
    num_images: int | None = None  # default DEFAULT_NUM_IMAGES (without per_class)
    per_class: int | None = None  # first K correct images of every class
    masking: str = "auto"
    reward: str = DEFAULT_REWARD
    players_grid: int | tuple[int, int] | None = None
    dtype: str = "float32"
    device: str | None = None  # None/"auto": the process's accelerator (Accelerate), "cpu" forces CPU
    batch_size: int = DEFAULT_BATCH_SIZE  # images explained together
    overwrite: bool = False
    quiet: bool = False
    embed_images: bool = False  # a Hub dataset's pictures in the output (local datasets: always)
    push_to_hub: str | None = None  # dataset repo (USER/NAME) to upload the finished folder to
    hub_private: bool = False  # create that repo as private
    interactions: bool = False  # MoXI rows also get gains and the interaction map (moxi_hf.interactions)
    interaction_top: int = DEFAULT_INTERACTION_TOP  # K: players of the order in the interaction map (at least 2)
    trust_remote_code: bool = False  # run Python code shipped with the model (never unless asked)
    # zero-shot models: the classes as text; default the model's recorded labels when they are as many as the
    # dataset's classes (matched by index), else the dataset's class names, in the template (see .data)
    candidate_labels: Sequence[str] | None = None
    hypothesis_template: str | Sequence[str] | None = None  # default: the model's, else the pipeline's prompt

    def validate(self) -> None:
        if self.num_images is not None and self.per_class is not None:
            raise MoXIError("give either --num-images or --per-class, not both")
        minimums = {"num_images": 1, "per_class": 1, "batch_size": 1, "shuffle_buffer": 1}
        minimums.update({name: option.minimum for name, option in _EVALUATED_OPTIONS.items()
                         if option.minimum is not None})
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < minimum):
                expected = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
                raise MoXIError(f"{name.replace('_', '-')} must be {expected}, got {value!r}")
        if isinstance(self.interaction_top, bool) or not isinstance(self.interaction_top, int) \
                or self.interaction_top < 2:
            raise MoXIError(f"interaction-top must be an integer of at least 2, got {self.interaction_top!r}")
        if isinstance(self.curves, str) or not self.curves or len(set(self.curves)) != len(self.curves):
            raise MoXIError("curves must be a non-empty list without repeats")
        for curve in self.curves:
            check_curve(curve)
        if self.methods is not None:
            for method in self.methods:
                if method not in METHOD_NAMES:
                    raise MoXIError(f"unknown method {method!r}; choose among {', '.join(METHOD_NAMES)}")
            if not self.methods or len(set(self.methods)) != len(self.methods):
                raise MoXIError("methods must be a non-empty list without repeats")
        from ..methods import get_method

        for method in self.methods or METHOD_NAMES:  # each method checks its own options (e.g. the sampler)
            get_method(method, **method_options(method, self))
        for option, declaring in _options_set(self).items():
            if self.methods is not None and not set(declaring) & set(self.methods):
                raise MoXIError(f"{option.flag} only applies to {' or '.join(declaring)}, which is not among the "
                                f"methods ({', '.join(self.methods)})")


#: config fields that are also method options but serve the whole run (the seed also shuffles the dataset)
_SHARED_FIELDS = ("seed",)


def _options_set(config) -> dict:
    """Evaluated method options whose value differs from their default -> the methods declaring them."""
    found: dict = {}
    for method, options in METHOD_OPTIONS.items():
        for option in options:
            if option.name in _SHARED_FIELDS or option.name not in _EVALUATED_OPTIONS:
                continue
            if getattr(config, option.name, option.default) != option.default:
                found.setdefault(option, []).append(method)
    return found


#: the settings above plus one field per evaluated method option (``seed``, ``num_samples``, ...): its
#: declared type and default. ``seed`` also seeds the shuffle of the split.
EvaluationConfig = make_dataclass(
    "EvaluationConfig",
    [(name, option.type, field(default=option.default)) for name, option in _EVALUATED_OPTIONS.items()],
    bases=(_EvaluationSettings,),
    namespace={"__doc__": _EvaluationSettings.__doc__ + " Method options: " + ", ".join(_EVALUATED_OPTIONS) + ".",
               "__module__": __name__},
)


def method_options(name: str, config) -> dict:
    """The options of method ``name`` taken from the config fields of the same name (declared per method).

    Options left unset (None) are left out; a budget other than exact gets its candidates, refresh and
    warmup resolved, so the recorded settings name them.
    """
    options = {option.name: getattr(config, option.name) for option in METHOD_OPTIONS.get(name, ())
               if option.name in _EVALUATED_OPTIONS and hasattr(config, option.name)}
    return with_budget_resolved(options)
