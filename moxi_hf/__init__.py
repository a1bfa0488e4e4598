"""moxi-hf: MoXI explanations (self-context Shapley + greedy interactions) for Hugging Face image classifiers.

The pipeline, one module per stage::

    modeling / removal  (token removal in ViT/DeiT | pixel masking)
      -> value          (v(S) over a batch of coalitions of players)
        -> methods      (moxi, self-shapley, full-shapley, gradcam, gradcam++, attention-rollout)
          -> explanation / explainer  (order, scores, heatmap, patches needed)
            -> metrics  (insertion/deletion curves, AUC)
"""

from .errors import MoXIError
from .explainer import Explainer
from .explanation import Explanation
from .loading import ExplainableModel, load_explainable_model
from .methods import METHODS, Attribution, Method, get_method
from .metrics import auc, measure_curves
from .modeling import (
    MoXIDeiTForImageClassification,
    MoXIDeiTForImageClassificationWithTeacher,
    MoXIDeiTModel,
    MoXIViTForImageClassification,
    MoXIViTModel,
    select_batch_removing,
)
from .players import Players
from .removal import PixelMasking, RemovalAdapter, TokenRemoval
from .value import REWARDS, ValueFunction, reward_from_logits

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "REWARDS",
    "Attribution",
    "ExplainableModel",
    "Explainer",
    "Explanation",
    "Method",
    "MoXIDeiTForImageClassification",
    "MoXIDeiTForImageClassificationWithTeacher",
    "MoXIDeiTModel",
    "MoXIError",
    "MoXIViTForImageClassification",
    "MoXIViTModel",
    "PixelMasking",
    "Players",
    "RemovalAdapter",
    "TokenRemoval",
    "ValueFunction",
    "auc",
    "get_method",
    "load_explainable_model",
    "measure_curves",
    "reward_from_logits",
    "select_batch_removing",
    "__version__",
]
