"""moxi-hf: MoXI explanations (self-context Shapley + greedy interactions) for Hugging Face image classifiers.

The pipeline, one module per stage::

    modeling / removal  (token removal in ViT-family models | pixel masking)
      -> value          (v(S) over a batch of coalitions of players)
        -> methods      (moxi, self-shapley, full-shapley, gradcam, gradcam++, attention-rollout)
          -> explanation / explainer  (order, scores, heatmap, patches needed)
            -> interactions  (gain split along MoXI's order, pairwise interaction maps)
            -> metrics  (insertion/deletion curves, AUC, curves summary)
              -> artifacts / plotting  (folders that are HF dataset repos and their Hub upload, figures)

Importing the package is light: every name below is loaded from its submodule on first use, so
the ``moxi`` command answers ``--help`` without importing torch.

``import moxi_hf.pipelines`` registers the ``"image-explanation"`` task of transformers'
``pipeline()``; ``Explainer.from_pipeline(pipe)`` explains what an image-classification pipeline
predicts.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> submodule that defines it
_EXPORTS = {
    "MoXIError": "errors",
    "Explainer": "explainer",
    "Explanation": "explanation",
    "ExplanationSet": "explanation",
    "Cost": "cost",
    "ExplainableModel": "loading",
    "load_explainable_model": "loading",
    "METHODS": "methods",
    "Attribution": "methods",
    "Method": "methods",
    "get_method": "methods",
    "auc": "metrics",
    "aggregate_curves": "metrics",
    "measure_curves": "metrics",
    "Players": "players",
    "PixelMasking": "removal",
    "RemovalAdapter": "removal",
    "TokenRemoval": "removal",
    "REWARDS": "value",
    "ValueFunction": "value",
    "Artifacts": "artifacts",
    "load_artifacts": "artifacts",
    "save_artifacts": "artifacts",
    "push_artifacts": "artifacts",
    "model_view": "images",
    "compare_methods": "compare",
    "comparison_to_dict": "compare",
}
_SUBMODULES = ("artifacts", "cli", "compare", "cost", "errors", "evaluation", "explainer", "explanation", "images",
               "interactions", "labels", "loading", "methods", "metrics", "modeling", "options", "pipelines", "players",
               "plotting", "removal", "sources", "value")

__all__ = [
    "Artifacts",
    "Attribution",
    "Cost",
    "ExplainableModel",
    "Explainer",
    "Explanation",
    "ExplanationSet",
    "METHODS",
    "Method",
    "MoXIError",
    "PixelMasking",
    "Players",
    "REWARDS",
    "RemovalAdapter",
    "TokenRemoval",
    "ValueFunction",
    "aggregate_curves",
    "auc",
    "compare_methods",
    "comparison_to_dict",
    "get_method",
    "load_artifacts",
    "load_explainable_model",
    "measure_curves",
    "model_view",
    "push_artifacts",
    "save_artifacts",
    "__version__",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
