"""The ``"image-explanation"`` task of transformers' ``pipeline()``: explain images the way pipelines classify them.

Importing this module registers the task (once, quietly)::

    import moxi_hf.pipelines  # noqa: F401
    from transformers import pipeline

    explain = pipeline("image-explanation", model="google/vit-base-patch16-224", device=0)
    explain("cat.jpg")  # [{"label", "score", "order", "patches_needed", "heatmap", "explanation"}]

The model is loaded by moxi's own loader (:func:`moxi_hf.loading.load_explainable_model`): the
same decisions and refusals as :meth:`moxi_hf.Explainer.from_pretrained`. Inputs are those of the
``image-classification`` pipeline (a path, a URL, a PIL image, an array or tensor, a list, a
generator, a ``KeyDataset``), read by :func:`moxi_hf.images.load_image`. Per image the result is
the pipeline's best ``top_k`` labels (default 1), each with its explanation. A CLIP or SigLIP model
explains its ``candidate_labels`` (given when the pipeline is built or per call, else those its
config records) put into its ``hypothesis_template``, as ``zero-shot-image-classification`` scores them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

from .errors import MoXIError
from .explainer import Explainer
from .explanation import Explanation
from .from_pipeline import explainer_for, function_rule
from .images import ImageInput, image_name, load_image
from .loading import ExplainableModel, load_explainable_model
from .methods import Method, method_with_options
from .options import DEFAULT_INTERACTION_TOP, METHOD_OPTIONS, check_curve
from .urls import URL_TIMEOUT
from .value import check_label, probabilities
from .zero_shot import check_candidate_labels, check_templates

__all__ = ["TASK", "ExplainableModelLoader", "ImageExplanationPipeline", "heatmap_image", "register"]

TASK = "image-explanation"
#: options that shape the explainer: given when the pipeline is built
BUILD_OPTIONS = ("masking", "reward", "players_grid", "max_batch_size", "max_tokens", "baseline", "pixel_grid",
                 "function_to_apply")
#: options of a call (given when the pipeline is built, they are the defaults of every call)
CALL_OPTIONS = ("method", "curve", "label", "top_k", "interactions", "interaction_top", "timeout",
                "candidate_labels", "hypothesis_template")
#: every method's own options (``num_samples``, ``early_stop``, ...), passed to the method explaining
METHOD_OPTION_NAMES = tuple(sorted({option.name for options in METHOD_OPTIONS.values() for option in options}))
#: label sets whose explainer a zero-shot pipeline keeps (the most recent)
LABEL_SETS_KEPT = 32


@dataclass
class LoadedModel:
    """What :class:`ExplainableModelLoader` hands transformers' ``pipeline()``: the loaded parts, or the error
    to raise when the pipeline is built.

    transformers catches the errors of a model class and then tries the checkpoint's own classes
    (a stock classifier, or one with a random head), so the loader itself never raises.
    """

    parts: ExplainableModel | None
    error: Exception | None = None
    #: read by ``pipeline()`` when given a ``device_map`` (refused when the pipeline is built)
    hf_device_map = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


class ExplainableModelLoader:
    """The task's model class: ``from_pretrained`` is moxi's loader, on the CPU (the pipeline then moves the
    model to its device).

    ``dtype="auto"`` (``pipeline()``'s default) keeps a float32 or bfloat16 checkpoint's dtype and
    explains a float16 one in float32; ``trust_remote_code`` is off unless given; ``device_map``
    is refused.
    """

    @classmethod
    def from_pretrained(cls, name, **kwargs) -> LoadedModel:
        try:
            return LoadedModel(_load(name, **kwargs))
        except Exception as error:  # noqa: BLE001 - raised when the pipeline is built (see LoadedModel)
            return LoadedModel(None, error)


def _load(name, dtype="auto", device_map=None, trust_remote_code=None, _from_pipeline=None, code_revision=None,
          **hub_kwargs) -> ExplainableModel:
    if device_map is not None:
        raise MoXIError("device_map is not supported: moxi explains a model on one device; pass device= instead")
    if code_revision is not None:
        raise MoXIError("code_revision is not supported: moxi does not load a model's own code from a revision")
    return load_explainable_model(name, dtype=dtype, device="cpu", trust_remote_code=bool(trust_remote_code),
                                  **hub_kwargs)


def heatmap_image(explanation: Explanation) -> Image.Image:
    """The explanation's heatmap as an 8-bit grey image the size of the picture the model saw (its processor's
    resize and crop): 255 on the first player of the order, fading to 0 after the players needed."""
    heat = np.asarray(explanation.heatmap, dtype=np.float64)
    top = heat.max() if heat.size else 0.0
    cells = Image.fromarray(np.round(heat / top * 255).astype(np.uint8) if top > 0 else np.zeros(heat.shape, np.uint8))
    view = explanation.display_image
    return cells.resize(view.size if view is not None else cells.size, Image.Resampling.NEAREST)


def _picture(item) -> ImageInput:
    """A tensor as the array :func:`moxi_hf.images.load_image` reads: channels last ((C, H, W) is transposed)."""
    if isinstance(item, torch.Tensor):
        array = item.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        return array
    return item


def _label_index(explainer: Explainer, label) -> int:
    """A class index from ``label``: an index, or a class name (a candidate label) as the pipeline prints it."""
    if explainer.zero_shot:
        return explainer.adapter.text.index(label)
    if isinstance(label, str):
        names = explainer.label_names()
        if label in names:
            return names.index(label)
        shown = ", ".join(repr(name) for name in names[:5]) + (", ..." if len(names) > 5 else "")
        raise MoXIError(f"unknown label {label!r}: the model's classes are {shown}")
    return check_label(label, explainer.num_labels)


def _check_call_options(options: dict) -> None:
    for name in options:
        if name in BUILD_OPTIONS:
            raise MoXIError(f"{name} shapes the explainer: give it when the pipeline is built, "
                            f"pipeline({TASK!r}, ..., {name}=...)")
        if name not in CALL_OPTIONS and name not in METHOD_OPTION_NAMES:
            raise MoXIError(f"unknown option {name!r} of the {TASK} pipeline; it takes {', '.join(CALL_OPTIONS)}, "
                            f"the methods' options ({', '.join(METHOD_OPTION_NAMES)}) and, when it is built, "
                            f"{', '.join(BUILD_OPTIONS)}")
    if "curve" in options:
        check_curve(options["curve"])
    top_k = options.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise MoXIError(f"top_k must be a whole number >= 1, got {top_k!r}")


class ImageExplanationPipeline(Pipeline):
    """Explains images with MoXI (or a baseline) as transformers' pipelines classify them.

    Per image: a list of the pipeline's ``top_k`` best labels (default 1; clamped to the number of
    labels), or of ``label`` alone (an index or a class name), each a dict with ``label`` (its
    name), ``score`` (its probability on the whole image, as the image-classification or zero-shot
    pipeline computes it), ``order`` (players, most important first), ``patches_needed``, ``heatmap`` (a grey
    PIL image over the picture the model saw) and ``explanation`` (the :class:`~moxi_hf.Explanation`).

    Options when it is built: ``masking``, ``reward``, ``players_grid``, ``baseline``,
    ``pixel_grid``, ``max_batch_size``, ``max_tokens``, ``function_to_apply``. Options of a call (or
    its defaults, when it is built): ``method``, ``curve``, ``label``, ``top_k``, ``interactions``,
    ``interaction_top``, ``timeout`` (seconds per URL step), the method's own options and, for a
    zero-shot model, ``candidate_labels`` and ``hypothesis_template`` (one explainer per label set,
    its text features computed once).
    ``batch_size`` explains that many images together (their coalitions share forward passes);
    the results do not depend on it. ``self.explainer`` is the :class:`~moxi_hf.Explainer`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args, image_processor=None, tokenizer=None, **kwargs):
        build = {name: kwargs.pop(name) for name in BUILD_OPTIONS if name in kwargs}
        if isinstance(model, LoadedModel):
            if model.error is not None:
                raise model.error
            parts = model.parts
            model, image_processor = parts.model, image_processor or parts.processor
            tokenizer = tokenizer or parts.tokenizer
        if image_processor is None or isinstance(image_processor, str):
            raise MoXIError(f"the {TASK} pipeline needs the model's image processor: with a model object, pass "
                            "image_processor=AutoImageProcessor.from_pretrained(...)")
        rule = function_rule(build.pop("function_to_apply", None))
        # the tokenizer stays with the explainer: batches of images need no text padding
        super().__init__(model, *args, image_processor=image_processor, **kwargs)
        self.explainer = explainer_for(Explainer, self.model, self.image_processor, rule=rule,
                                       tokenizer=tokenizer, **build)
        self._labelled: OrderedDict[tuple, Explainer] = OrderedDict()

    def _sanitize_parameters(self, timeout=None, **options):
        _check_call_options(options)
        return ({} if timeout is None else {"timeout": timeout}), options, {}

    def __call__(self, inputs, **kwargs):
        """Explain one image (a list of dicts, one per label) or several (a list of such lists; a generator or
        a dataset gives an iterator). See the class docstring for the options."""
        return super().__call__(inputs, **kwargs)

    def preprocess(self, image, timeout=None) -> dict:
        return {"image": load_image(_picture(image), timeout=URL_TIMEOUT if timeout is None else timeout),
                "name": image_name(image)}

    def _explainer(self, candidate_labels, hypothesis_template) -> Explainer:
        """The explainer of a call: a classifier's own; a zero-shot model's for the call's label set and template
        (those not given are the pipeline's), one per label set, the most recent kept."""
        if not self.explainer.zero_shot:
            if candidate_labels is not None or hypothesis_template is not None:
                raise MoXIError("candidate_labels and hypothesis_template are for zero-shot models (CLIP, SigLIP); "
                                "this model is a classifier with its own labels")
            return self.explainer
        if candidate_labels is None and hypothesis_template is None:
            return self.explainer.labelled()
        text = self.explainer.adapter.text
        key = (text.labels if candidate_labels is None else check_candidate_labels(candidate_labels),
               text.templates if hypothesis_template is None else check_templates(hypothesis_template))
        if not key[0]:  # a template alone, and no labels anywhere
            return self.explainer.labelled()
        explainer = self._labelled.get(key)
        if explainer is None:
            explainer = self._labelled[key] = self.explainer.with_candidate_labels(*key).labelled()
            while len(self._labelled) > LABEL_SETS_KEPT:
                self._labelled.popitem(last=False)
        self._labelled.move_to_end(key)
        return explainer

    def _forward(self, inputs: dict, method: str | Method = "moxi", curve: str = "insertion", label=None,
                 top_k: int | None = None, interactions: bool = False, interaction_top: int = DEFAULT_INTERACTION_TOP,
                 candidate_labels=None, hypothesis_template=None, **method_options) -> dict:
        batched = isinstance(inputs["image"], list)  # several images when batch_size > 1
        images, names = (inputs["image"], inputs["name"]) if batched else ([inputs["image"]], [inputs["name"]])
        explainer = self._explainer(candidate_labels, hypothesis_template)
        if label is not None and top_k not in (None, 1):
            raise MoXIError("give label (one class to explain) or top_k (the best classes), not both")
        pixel_values, _ = explainer.preprocess(images)
        # one image per forward pass: a score does not depend on the images batched with it
        logits = torch.cat([explainer.adapter.full_logits(pixel_values[index: index + 1]) for index in range(len(images))])
        scores = probabilities(logits, explainer.adapter.link).cpu()
        if label is not None:
            labels = [[_label_index(explainer, label)] for _ in images]
        else:  # the pipeline's order: best score first, ties to the lowest index
            count = min(top_k or 1, explainer.num_labels)
            labels = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :count].tolist()
        pairs = [(index, target) for index, targets in enumerate(labels) for target in targets]
        name, options = method_with_options(method, method_options)
        found = explainer.explain_methods(
            [images[index] for index, _ in pairs], [method], [curve], [target for _, target in pairs],
            options=options, interactions=interactions, interaction_top=interaction_top,
        )[(name, curve)]
        results: list[list[dict]] = [[] for _ in images]
        for (index, target), explanation in zip(pairs, found):
            explanation.image = names[index]
            results[index].append({
                "label": explainer.label_name(target) or str(target),
                "score": float(scores[index, target]),
                "order": explanation.order,
                "patches_needed": explanation.patches_needed,
                "heatmap": heatmap_image(explanation),
                "explanation": explanation,
            })
        return {"explained": results if batched else results[0]}

    def postprocess(self, outputs: dict) -> list[dict]:
        return outputs["explained"]


def register() -> None:
    """Register :data:`TASK` with transformers' pipeline registry, unless this class already holds it.

    Called on import; quiet (transformers logs a warning when a task is registered again, so a task
    held by an older copy of this module, after a reload, is replaced in the registry directly).
    """
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is ImageExplanationPipeline:
        return
    if current is None:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageExplanationPipeline,
                                            pt_model=ExplainableModelLoader, default=_default(), type="image")
        return
    entry = {**current, "impl": ImageExplanationPipeline, "pt": (ExplainableModelLoader,)}
    PIPELINE_REGISTRY.supported_tasks[TASK] = entry
    ImageExplanationPipeline._registered_impl = {TASK: entry}


def _default() -> dict | None:
    """The embedded default model, so that ``pipeline("image-explanation")`` runs offline."""
    from .defaults import default_model_path

    try:
        return {"model": (str(default_model_path()), None)}
    except MoXIError:
        return None


register()
