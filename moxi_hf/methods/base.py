"""What every method returns, and the registry that maps method names to classes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..cost import Cost
from ..errors import MoXIError
from ..options import CURVES, METHOD_OPTIONS, Option
from ..value import ValueFunction

__all__ = ["Attribution", "Method", "CURVES", "order_by_score", "register_method", "get_method", "METHODS",
           "method_with_options"]


@dataclass
class Attribution:
    """A method's result for a batch of B images over P players.

    ``order`` (B, K) long: players most important first; K = P unless the method stopped early.
    ``scores`` (B, P) float or None. ``curve_probabilities``/``curve_predictions`` (B, K + 1):
    p(label) and the predicted class after k = 0..K players of ``order`` were inserted/deleted,
    when the method measured them on its way (MoXI does); otherwise None. ``lengths`` (B,),
    when set, says how many entries of each row of ``order`` are valid (early stop).
    ``settings``: choices the method made on its own that a run should record (e.g. Grad-CAM's layer).
    """

    order: torch.Tensor
    scores: torch.Tensor | None = None
    curve_probabilities: torch.Tensor | None = None
    curve_predictions: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)


def order_by_score(scores: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """Players sorted by score (B, P) -> (B, P); ties keep the lowest index first."""
    return torch.sort(scores, dim=1, descending=descending, stable=True).indices


class Method(ABC):
    """An explanation method. Game-theoretic methods only call the value function."""

    name: str
    #: False when the order is the same for insertion and deletion (CAMs, rollout).
    depends_on_curve: bool = True
    #: the user-facing keyword options (declared in :data:`moxi_hf.options.METHOD_OPTIONS`)
    options: ClassVar[tuple[Option, ...]] = ()

    def option_values(self) -> dict:
        """The declared options with this instance's values (what an explanation records)."""
        return {option.name: getattr(self, option.name, option.default) for option in self.options}

    @classmethod
    def unsupported_reason(cls, adapter) -> str | None:
        """Why this method cannot explain a model run through ``adapter`` (a removal adapter), or None.

        The one place a method says whether it applies: decided from the adapter and its model,
        without running anything, and starting with the method's name.
        """
        return None

    def cost(self, n_players: int, curve: str) -> Cost | None:
        """The coalitions :meth:`attribute` evaluates for one image of ``n_players`` players, by size
        (None when not known in advance). Methods that read the model's own tensors (Grad-CAM,
        attention rollout) evaluate none."""
        return None

    @abstractmethod
    def attribute(self, game: ValueFunction, curve: str) -> Attribution:
        """Order (and scores) of the players of every image held by ``game``."""


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if "options" not in vars(cls):
        cls.options = METHOD_OPTIONS.get(cls.name, ())
    METHODS[cls.name] = cls
    return cls


def get_method(name: str | Method, **options) -> Method:
    """A method instance by name (``moxi``, ``self-shapley``, ...) with its options."""
    if isinstance(name, Method):
        if options:
            raise MoXIError("method options cannot be given with a method instance")
        return name
    if name not in METHODS:
        raise MoXIError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    try:
        return METHODS[name](**options)
    except TypeError as error:
        raise MoXIError(f"bad option for method {name!r}: {error}") from None


def method_with_options(method: str | Method, options: dict) -> tuple[str, dict | None]:
    """(the method's name, ``{name: options}`` for a name; None for an instance, which carries its own):
    the ``options`` argument of :meth:`moxi_hf.Explainer.explain_methods` for one method."""
    if isinstance(method, Method):
        if options:
            raise MoXIError("method options cannot be given with a method instance")
        return method.name, None
    return method, {method: options}
