"""Names the library accepts (methods, curves, maskings, rewards, dtypes), its defaults, and each method's options.

This module imports nothing heavy, so the command line can build its flags and answer ``--help``
without importing torch. Each method's options are declared here once; :class:`moxi_hf.Method`
subclasses carry them as ``options`` and the CLI flags, the evaluation config and the artifact
settings are derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import MoXIError

__all__ = ["CURVES", "DEFAULT_BATCH_SIZE", "DEFAULT_DATASET", "DEFAULT_INTERACTION_TOP", "DEFAULT_NUM_IMAGES",
           "DEFAULT_PUSH_TIMEOUT", "DEFAULT_REWARD", "DTYPES", "MASKINGS", "METHOD_NAMES", "METHOD_OPTIONS",
           "REWARD_NAMES", "SHAPLEY_SAMPLERS", "Option", "check_curve", "flag_name"]

#: method names in the order they are listed in help and errors
METHOD_NAMES = ("moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++", "attention-rollout")
CURVES = ("insertion", "deletion")
MASKINGS = ("auto", "token", "pixel")
REWARD_NAMES = ("log-odds", "log-prob", "logit")
DEFAULT_REWARD = "log-odds"
#: the model dtypes a user may choose by name
DTYPES = ("float32", "bfloat16")
#: images explained together (their coalitions share forward passes) by the commands
DEFAULT_BATCH_SIZE = 8
#: how full-shapley estimates Shapley values: permutation sampling (default), the paper's sampler, enumeration
SHAPLEY_SAMPLERS = ("permutation", "original", "exact")
#: ``moxi evaluate`` defaults: the dataset and how many correctly classified images
DEFAULT_DATASET = "ILSVRC/imagenet-1k"
DEFAULT_NUM_IMAGES = 100
#: K: players of the order in an interaction map, unless told otherwise
DEFAULT_INTERACTION_TOP = 10
#: seconds a Hub request of ``moxi push`` may go without progress before the upload gives up
DEFAULT_PUSH_TIMEOUT = 60.0


def check_curve(curve: str) -> str:
    """``curve`` when it is ``insertion`` or ``deletion``, else a MoXIError."""
    if curve not in CURVES:
        raise MoXIError(f"unknown curve {curve!r}; choose insertion or deletion")
    return curve


@dataclass(frozen=True)
class Option:
    """One keyword option of a method: its name, type, default and help text.

    ``curve_safe`` False: the option makes orders incomplete (early stop), so evaluations and
    comparisons, which need complete orders, never set it. ``minimum``: the smallest value an
    integer option accepts (checked by the flag and the evaluation config).
    """

    name: str
    type: type
    default: Any
    help: str
    curve_safe: bool = True
    cli: bool = True  # False: Python API only
    minimum: int | None = None
    choices: tuple | None = None  # the accepted values, where they are a fixed list

    @property
    def flag(self) -> str:
        return flag_name(self.name)


def flag_name(name: str) -> str:
    """``num_samples`` -> ``--num-samples``."""
    return "--" + name.replace("_", "-")


#: method -> its user-facing options (the constructor keywords a user may set)
METHOD_OPTIONS: dict[str, tuple[Option, ...]] = {
    "moxi": (
        Option("max_players", int, None, "moxi: stop after this many players", curve_safe=False, cli=False),
        Option("early_stop", bool, False, "moxi: stop once the label is reached (insertion) / lost (deletion); "
                                          "the order then holds only the players needed", curve_safe=False),
    ),
    "self-shapley": (),
    "full-shapley": (
        Option("num_samples", int, 200, "full-shapley: permutations (permutation sampler) or contexts per player "
                                        "(original); unused by exact", minimum=1),
        Option("seed", int, 0, "full-shapley: random seed"),
        Option("sampler", str, "permutation", "full-shapley: permutation (unbiased), original (the paper's sampler) "
                                              "or exact (every coalition, up to 12 players)", choices=SHAPLEY_SAMPLERS),
    ),
    "gradcam": (Option("eigen_smooth", bool, False, "gradcam: first principal component of the map", cli=False),),
    "gradcam++": (Option("eigen_smooth", bool, False, "gradcam++: first principal component of the map", cli=False),),
    "attention-rollout": (),
}
