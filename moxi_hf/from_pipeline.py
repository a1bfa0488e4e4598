"""An Explainer for what a transformers pipeline predicts: its own weights, processor, device, dtype and scores.

:meth:`moxi_hf.Explainer.from_pipeline` reads an ``image-classification`` or a
``zero-shot-image-classification`` pipeline:

- the model's parameters are the pipeline's own tensors (a ViT-family model is viewed as its
  token-removal subclass without copying a weight; the pipeline's model keeps its class, config
  and outputs);
- its image processor, device and dtype (float32 or bfloat16; a float16 pipeline is refused with
  the fix, since converting would copy every weight and change the scores);
- its scores: ``function_to_apply`` when the pipeline was built with one, else the pipeline's own
  default (a sigmoid per class for multi-label and one-logit checkpoints, a softmax otherwise), so
  p(label) on the whole image is the score the pipeline prints;
- for a zero-shot pipeline (CLIP, SigLIP), its tokenizer too. Its classes are the candidate labels
  given to ``from_pipeline`` or to each call, put into the pipeline's prompt template (``"This is a
  photo of {}."`` unless given); its scores are the pipeline's: a softmax over the candidates for
  CLIP, a sigmoid per candidate for SigLIP.
"""

from __future__ import annotations

import torch

from .errors import MoXIError
from .kinds import refusal
from .loading import (
    EXPLAINED_DTYPES,
    adapter_for,
    is_zero_shot_model,
    with_output_rule,
    zero_shot_adapter_for,
)
from .zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE, refuse_classifier_labels

__all__ = ["EXPLAINED_DTYPES", "SUPPORTED_PIPELINE_TASKS", "check_explained_dtype", "explainer_for",
           "explainer_from_pipeline", "function_rule"]

#: the pipeline tasks an Explainer can be built from (their pipeline class names in transformers)
SUPPORTED_PIPELINE_TASKS = {"image-classification": "ImageClassificationPipeline",
                            "zero-shot-image-classification": "ZeroShotImageClassificationPipeline"}


def function_rule(function_to_apply) -> tuple[str, str] | None:
    """(link, decision) for a pipeline's ``function_to_apply`` ("sigmoid": p > 0.5 predicts the label;
    "softmax": the top class), None for unset or "default"; "none" (raw logits) is refused."""
    if function_to_apply is None:
        return None
    name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
    if name == "default":
        return None
    if name == "sigmoid":
        return ("sigmoid", "threshold")
    if name == "softmax":
        return ("softmax", "argmax")
    if name == "none":
        raise MoXIError("function_to_apply='none' gives raw logits, not probabilities, so there is no probability "
                        "of a label to explain; use 'softmax', 'sigmoid' or leave it unset")
    raise MoXIError(f"unknown function_to_apply {function_to_apply!r}; choose softmax or sigmoid")


def check_explained_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s weights when moxi explains in it (float32, bfloat16), else a MoXIError with the fix."""
    dtype = next(model.parameters()).dtype
    if dtype not in EXPLAINED_DTYPES:
        name = str(dtype).removeprefix("torch.")
        raise MoXIError(f"the pipeline's model runs in {name}, and moxi explains in float32 or bfloat16 without "
                        f"copying the pipeline's weights: build the pipeline with dtype=torch.float32 (or "
                        f"torch.bfloat16)")
    return dtype


def explainer_for(
    cls: type,
    model: torch.nn.Module,
    processor,
    *,
    tokenizer=None,
    rule: tuple[str, str] | None = None,
    candidate_labels=None,
    hypothesis_template=None,
    recorded: bool = True,
    masking: str = "auto",
    players_grid: int | tuple[int, int] | None = None,
    baseline: str = "zero",
    pixel_grid: int | tuple[int, int] | None = None,
    **options,
):
    """A ``cls`` (:class:`moxi_hf.Explainer`) over a loaded model and its processor, sharing the model's weights.

    A classifier reads its logits by ``rule`` (link, decision; default: the checkpoint's own,
    :func:`moxi_hf.loading.output_rule`) and takes no candidate labels. A CLIP/SigLIP zero-shot model needs
    its ``tokenizer``; ``candidate_labels``/``hypothesis_template`` as for
    :func:`moxi_hf.loading.build_zero_shot_adapter` (``recorded=False``: not those the config records).
    ``options``: the rest of ``cls``'s keywords (``reward``, ``max_batch_size``, ``max_tokens``).
    """
    reason = refusal(model.config)
    if reason:
        raise MoXIError(reason)
    zero_shot = is_zero_shot_model(model)
    if not zero_shot and (candidate_labels is not None or hypothesis_template is not None):
        refuse_classifier_labels(getattr(model.config, "_name_or_path", "") or type(model).__name__,
                                 model.config.num_labels)
    _check_placement(model)
    if zero_shot:
        if rule is not None:
            raise MoXIError("function_to_apply is for classifiers; a zero-shot model scores as "
                            "zero-shot-image-classification does (CLIP: softmax, SigLIP: sigmoid)")
        if tokenizer is None:
            raise MoXIError("a zero-shot model needs its tokenizer to read the candidate labels; build the pipeline "
                            "with tokenizer=")
        adapter = zero_shot_adapter_for(model, processor, tokenizer, candidate_labels, hypothesis_template, masking,
                                        pixel_grid, recorded)  # token removal: no pixel baseline
        return cls(model, processor, adapter, players_grid=players_grid, tokenizer=tokenizer, **options)
    adapter = adapter_for(model, processor, masking, pixel_grid, baseline, players_grid)  # the checkpoint's rule
    if rule is not None:
        adapter = with_output_rule(adapter, model.config, rule)
    return cls(model, processor, adapter, players_grid=players_grid, **options)


def _check_placement(model: torch.nn.Module) -> None:
    """Refuse a model split across devices, or in a dtype moxi does not explain in."""
    if getattr(model, "hf_device_map", None):
        raise MoXIError("the model is split across devices (device_map); moxi explains a model on one device: "
                        "load it with device= instead")
    check_explained_dtype(model)


def _task_of(pipe) -> str | None:
    """The supported task whose pipeline class ``pipe`` is, or None."""
    from transformers import pipelines

    for task, class_name in SUPPORTED_PIPELINE_TASKS.items():
        if isinstance(pipe, getattr(pipelines, class_name)):
            return task
    return None


def explainer_from_pipeline(cls: type, pipe, candidate_labels=None, hypothesis_template=None, **explainer_options):
    """See :meth:`moxi_hf.Explainer.from_pipeline`."""
    task = _task_of(pipe)
    if task is None:
        what = getattr(pipe, "task", None) or type(pipe).__name__
        raise MoXIError(f"Explainer.from_pipeline takes an {' or '.join(SUPPORTED_PIPELINE_TASKS)} pipeline, got "
                        f"{what!r}")
    if pipe.image_processor is None:
        raise MoXIError("the pipeline has no image processor; build it with image_processor=")
    if task == "zero-shot-image-classification":
        if not is_zero_shot_model(pipe.model):
            raise MoXIError(refusal(pipe.model.config)
                            or f"moxi explains CLIPModel and SiglipModel zero-shot models, got {type(pipe.model).__name__}")
        # a call's own prompt template wins over the one the pipeline was built with, as in the pipeline
        own = pipe._preprocess_params
        return explainer_for(
            cls, pipe.model, pipe.image_processor, tokenizer=pipe.tokenizer,
            candidate_labels=own.get("candidate_labels") if candidate_labels is None else candidate_labels,
            hypothesis_template=own.get("hypothesis_template", DEFAULT_HYPOTHESIS_TEMPLATE)
            if hypothesis_template is None else hypothesis_template, recorded=False, **explainer_options)
    return explainer_for(cls, pipe.model, pipe.image_processor,
                         rule=function_rule(pipe._postprocess_params.get("function_to_apply")),
                         candidate_labels=candidate_labels, hypothesis_template=hypothesis_template,
                         **explainer_options)
