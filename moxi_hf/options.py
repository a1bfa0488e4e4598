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

__all__ = ["BUDGETS", "CURVES", "DEFAULT_BATCH_SIZE", "DEFAULT_DATASET", "DEFAULT_INTERACTION_TOP", "DEFAULT_NUM_IMAGES",
           "DEFAULT_PUSH_TIMEOUT", "DEFAULT_REWARD", "DTYPES", "MASKINGS", "METHOD_NAMES", "METHOD_OPTIONS",
           "REWARD_NAMES", "SHAPLEY_SAMPLERS", "Option", "check_curve", "flag_name", "resolve_budget",
           "with_budget_resolved"]

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

#: MoXI's budgets: None = the exact greedy; otherwise the budgeted greedy's players per budgeted step, steps
#: between evaluations of every player, and first steps that evaluate every player (docs/performance.md,
#: "The budget": the measured frontier behind "fast")
BUDGETS: dict[str, dict[str, int] | None] = {"exact": None, "fast": {"candidates": 5, "refresh": 16, "warmup": 8}}


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
        Option("budget", str, "exact", "moxi: exact (every remaining player at every greedy step) or fast (the "
                                       "budgeted greedy: about 4x less work, AUCs within 0.005)",
               choices=tuple(BUDGETS)),
        Option("candidates", int, None, "moxi with budget fast: players re-evaluated per step (fast: "
                                        f"{BUDGETS['fast']['candidates']})", minimum=1),
        Option("refresh", int, None, "moxi with budget fast: steps between evaluations of every remaining player "
                                     f"(fast: {BUDGETS['fast']['refresh']})", minimum=1),
        Option("warmup", int, None, "moxi with budget fast: first steps that evaluate every remaining player "
                                    f"(fast: {BUDGETS['fast']['warmup']})", minimum=0),
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


def _at_least(name: str, value, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise MoXIError(f"{name} must be {kind}, got {value!r}")
    return value


def resolve_budget(budget: str, candidates: int | None = None, refresh: int | None = None,
                   warmup: int | None = None) -> tuple[int | None, int | None, int | None]:
    """(candidates, refresh, warmup) of a budget: all None for ``"exact"``; the preset of ``"fast"``
    (:data:`BUDGETS`), each value given overriding the preset's."""
    if budget not in BUDGETS:
        raise MoXIError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    given = {"candidates": _at_least("candidates", candidates, 1), "refresh": _at_least("refresh", refresh, 1),
             "warmup": _at_least("warmup", warmup, 0)}
    preset = BUDGETS[budget]
    if preset is None:
        if any(value is not None for value in given.values()):
            raise MoXIError("candidates, refresh and warmup apply to budget 'fast' (--budget fast), not to the "
                            "exact greedy, which evaluates every player at every step")
        return None, None, None
    values = [preset[name] if value is None else value for name, value in given.items()]
    return values[0], values[1], values[2]


def with_budget_resolved(options: dict) -> dict:
    """MoXI's ``options`` with a budget other than exact spelled out (its candidates, refresh and warmup), so
    that recorded settings name them; other options unchanged, None values left out."""
    options = dict(options)
    if options.get("budget", "exact") != "exact":
        options["candidates"], options["refresh"], options["warmup"] = resolve_budget(
            options["budget"], options.get("candidates"), options.get("refresh"), options.get("warmup"))
    return {key: value for key, value in options.items() if value is not None}
