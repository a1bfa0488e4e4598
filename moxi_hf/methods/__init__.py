"""Explanation methods: each turns a value function (or the model's own tensors) into an order of players."""

# Import order = the order methods are listed in help and errors.
from .moxi import MoXI  # isort: skip
from .self_shapley import SelfContextShapley  # isort: skip
from .full_shapley import FullContextShapley  # isort: skip
from .gradcam import GradCAM, GradCAMPlusPlus  # isort: skip
from .attention_rollout import AttentionRollout  # isort: skip
from .base import CURVES, METHODS, Attribution, Method, get_method, method_with_options, order_by_score  # isort: skip

__all__ = [
    "AttentionRollout",
    "Attribution",
    "CURVES",
    "FullContextShapley",
    "GradCAM",
    "GradCAMPlusPlus",
    "METHODS",
    "Method",
    "MoXI",
    "SelfContextShapley",
    "get_method",
    "method_with_options",
    "order_by_score",
]
