"""The zero-shot game: a CLIP or SigLIP model's candidate logits when it sees only some patches.

The classes are named by text. Their text features are computed once per label set
(:class:`CandidateText`), never per coalition: a coalition costs one vision-tower pass, whose
image feature is compared with every candidate (:class:`ZeroShotRemoval`). On the whole image
the candidate logits are ``pipeline("zero-shot-image-classification")``'s ``logits_per_image``:

- CLIP: ``logit_scale.exp() * cos(image, text_k)``; scores = softmax over the candidates.
- SigLIP: ``logit_scale.exp() * cos(image, text_k) + logit_bias``; scores = an independent sigmoid
  per candidate.

``logit_scale`` (and SigLIP's ``logit_bias``) are part of the value. The adapter's :attr:`link`
says which scores the family's logits give ("softmax" or "sigmoid").
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import MoXIError
from .labels import template_value
from .modeling import TokenRemovalImageText
from .removal import TokenContext, TokenRemoval
from .value import reward_from_logits

__all__ = [
    "DEFAULT_HYPOTHESIS_TEMPLATE",
    "CandidateCache",
    "CandidateText",
    "ZeroShotLabels",
    "ZeroShotRemoval",
    "check_candidate_labels",
    "check_candidate_reward",
    "check_templates",
    "default_candidates",
    "refuse_classifier_labels",
    "tokenizer_kwargs",
]

#: The zero-shot pipeline's default prompt.
DEFAULT_HYPOTHESIS_TEMPLATE = "This is a photo of {}."
#: config.json keys where a zero-shot model records its default labels and prompt(s).
CONFIG_LABELS_KEY = "moxi_candidate_labels"
CONFIG_TEMPLATE_KEY = "moxi_hypothesis_template"


def check_candidate_labels(labels: Sequence[str] | str | None) -> tuple[str, ...]:
    """The candidate labels as a tuple; refuses none, an empty list, empty or duplicated labels."""
    if isinstance(labels, str):
        raise MoXIError(f"candidate labels must be a list of texts, got the single string {labels!r}")
    labels = tuple(labels or ())
    if not labels:
        raise MoXIError("a zero-shot model needs candidate labels: give at least one text label")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise MoXIError(f"candidate labels must be non-empty texts, got {label!r}")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise MoXIError(f"candidate labels must be distinct; repeated: {', '.join(map(repr, duplicated))}")
    return labels


def check_templates(template: str | Sequence[str] | None) -> tuple[str, ...]:
    """The prompt template(s) as a tuple (default: the pipeline's); each must contain ``{}`` once."""
    if template is None:
        return (DEFAULT_HYPOTHESIS_TEMPLATE,)
    templates = (template,) if isinstance(template, str) else tuple(template)
    if not templates:
        raise MoXIError("the list of prompt templates is empty")
    for text in templates:
        if not isinstance(text, str) or text.count("{}") != 1 or set("{}") & set(text.replace("{}", "", 1)):
            raise MoXIError(f"a prompt template must contain '{{}}' exactly once (where the label goes), got {text!r}")
    return templates


def tokenizer_kwargs(config) -> dict:
    """How the zero-shot pipeline tokenises the prompts for a model with this config."""
    if "siglip" in config.model_type:  # SigLIP was trained on prompts padded to 64 tokens
        return {"padding": "max_length", "max_length": 64, "truncation": True}
    return {"padding": True}


def default_candidates(config) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The (labels, templates) a model folder records in config.json (``moxi_candidate_labels``,
    ``moxi_hypothesis_template``: a text or a list), or None when it records no labels."""
    labels = getattr(config, CONFIG_LABELS_KEY, None)
    if labels is None:
        return None
    return check_candidate_labels(labels), check_templates(getattr(config, CONFIG_TEMPLATE_KEY, None))


def refuse_classifier_labels(name: str, num_labels: int) -> None:
    """Candidate labels given to a classifier: one line (its classes are its own)."""
    raise MoXIError(f"{name!r} is a classifier with its own {num_labels} classes; candidate labels and a prompt "
                    "template are for zero-shot models (CLIPModel, SiglipModel)")


def check_candidate_reward(link: str, count: int, reward: str) -> None:
    """Refuse one candidate label under a softmax reward: it has nothing to be compared with (p = 1 always)."""
    if link == "softmax" and count == 1 and reward != "logit":
        raise MoXIError(f"one candidate label alone has nothing to be compared with under the {reward} reward of a "
                        "softmax over the candidates (CLIP): its probability is always 1; give two or more labels, "
                        "or use the logit reward (a retrieval score)")


@dataclass(frozen=True)
class CandidateText:
    """The candidate labels, their prompt template(s) and their text features, computed once.

    ``features`` (K, projection) float32 are unit vectors: for one template, each prompt's
    normalised text feature; for several (a prompt ensemble), the mean of the normalised
    features of a label's prompts, normalised again.
    """

    labels: tuple[str, ...]
    templates: tuple[str, ...]
    features: torch.Tensor

    @classmethod
    def build(cls, model: TokenRemovalImageText, tokenizer, labels: Sequence[str],
              template: str | Sequence[str] | None = None) -> CandidateText:
        """Text features of ``labels`` in ``template`` (a text with ``{}``, or a list of them), tokenised
        as the zero-shot pipeline does; one text-tower pass per template."""
        labels, templates = check_candidate_labels(labels), check_templates(template)
        device = next(model.parameters()).device
        features = []
        with torch.no_grad():
            for text in templates:
                inputs = tokenizer([text.format(label) for label in labels], return_tensors="pt",
                                   **tokenizer_kwargs(model.config)).to(device)
                features.append(F.normalize(model.get_text_features(**inputs).pooler_output.float(), dim=-1))
        mean = torch.stack(features).mean(dim=0)
        return cls(labels, templates, mean if len(features) == 1 else F.normalize(mean, dim=-1))

    @classmethod
    def empty(cls, templates: Sequence[str] | str | None = None) -> CandidateText:
        """No label yet: a zero-shot model loaded without candidate labels (they come with each call)."""
        return cls((), check_templates(templates), torch.zeros(0, 0))

    def index(self, label: str | int) -> int:
        """The position of a candidate given by its text or index."""
        if isinstance(label, str):
            if label not in self.labels:
                raise MoXIError(f"label {label!r} is not among the candidates: {', '.join(map(repr, self.labels))}")
            return self.labels.index(label)
        if not 0 <= int(label) < len(self.labels):
            raise MoXIError(f"label {label} is out of range: there are {len(self.labels)} candidate labels")
        return int(label)


class ZeroShotRemoval(TokenRemoval):
    """Token removal inside a CLIP or SigLIP vision tower; the logits are the candidate logits (C, K).

    Args:
        model: a MoXI image-text model (``MoXICLIPModel``, ``MoXISiglipModel``).
        text: the candidate labels and their text features (:meth:`CandidateText.build`).
        interpolate_pos_encoding, image_size: as for :class:`~moxi_hf.removal.TokenRemoval`.
    """

    model_classes = (TokenRemovalImageText,)

    def __init__(self, model: TokenRemovalImageText, text: CandidateText, interpolate_pos_encoding: bool = False,
                 image_size: tuple[int, int] | None = None):
        if isinstance(model, TokenRemovalImageText) and not getattr(model.backbone, "use_head", True):
            raise MoXIError(
                f"this {type(model).__name__} checkpoint has no attention-pooling head (vision_use_head=False), "
                "so it gives no image feature to compare with text; load a SigLIP checkpoint with its head"
            )
        super().__init__(model, interpolate_pos_encoding=interpolate_pos_encoding, image_size=image_size)
        self.text = text
        self._text_features = text.features.to(self.device)

    @property
    def link(self) -> str:
        """"softmax" (CLIP: scores compete across the candidates) or "sigmoid" (SigLIP: one score per label)."""
        return self.model.link

    @property
    def num_labels(self) -> int:
        return len(self.text.labels)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.text.labels

    def candidate_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Candidate logits (C, K) float32 from image features (C, projection)."""
        image = F.normalize(image_features.float(), dim=-1)
        scale, bias = self.model.logit_parameters()
        logits = image @ self._text_features.T * scale.float().exp()
        return logits + bias.float() if bias is not None else logits

    def head_output(self, prepared: TokenContext, sequence: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if prepared.encoder is not None:
            features = prepared.encoder.logits(sequence)
        else:
            features = self.model.image_features_from_embeddings(
                sequence, token_index=indices, resolution=prepared.resolution,
                interpolate_pos_encoding=self.interpolate_pos_encoding,
            )
        return self.candidate_logits(features)

    def differentiable_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Candidate logits (B, K) through the vision tower, differentiable in its activations (Grad-CAM)."""
        features = self.model.get_image_features(pixel_values=pixel_values, **self.forward_kwargs).pooler_output
        return self.candidate_logits(features)

    def gradient_target(self, logits: torch.Tensor, labels: torch.Tensor, reward: str) -> torch.Tensor:
        """The reward itself (C,): under CLIP's softmax the contrast with the other candidates is part of it."""
        return reward_from_logits(logits.float(), labels, reward, self.link)

    def with_text(self, text: CandidateText) -> ZeroShotRemoval:
        """The same adapter (same model, grid, options) comparing images with another label set."""
        other = copy.copy(self)
        other.text, other._text_features = text, text.features.to(self.device)
        return other


class CandidateCache:
    """Text features of a model per (labels, templates), each computed once; the ``size`` most recent are kept.

    Shared by every call that names its own candidate labels, so a label set costs one text-tower pass
    per template however many images or coalitions use it.
    """

    def __init__(self, model: TokenRemovalImageText, tokenizer, size: int = 32):
        self.model, self.tokenizer, self.size = model, tokenizer, size
        self._texts: OrderedDict[tuple, CandidateText] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, labels: Sequence[str], template: str | Sequence[str] | None = None) -> CandidateText:
        key = (check_candidate_labels(labels), check_templates(template))
        with self._lock:
            if key in self._texts:
                self._texts.move_to_end(key)
                return self._texts[key]
        if self.tokenizer is None:
            raise MoXIError("a zero-shot model needs its tokenizer to read the candidate labels; load it with the "
                            "model (tokenizer=...)")
        text = CandidateText.build(self.model, self.tokenizer, *key)
        with self._lock:
            self._texts[key] = text
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)
        return text


class ZeroShotLabels:
    """The zero-shot side of :class:`moxi_hf.Explainer`: its candidate labels, template, and calls with their own.

    Reads the explainer's ``adapter`` (a :class:`ZeroShotRemoval` for a zero-shot model), ``model``,
    ``tokenizer``, ``name``, ``num_labels`` and ``reward``.
    """

    def _candidate_texts(self) -> CandidateCache:
        """Text features per label set, shared by this explainer and those derived from it (created once)."""
        cache = self.__dict__.get("_candidate_cache")
        if cache is None:
            cache = self.__dict__["_candidate_cache"] = CandidateCache(self.model, self.tokenizer)
        return cache

    @property
    def zero_shot(self) -> bool:
        """True for a CLIP/SigLIP model whose classes are candidate labels named by text."""
        return isinstance(self.adapter, ZeroShotRemoval)

    @property
    def candidate_labels(self) -> list[str] | None:
        """A zero-shot model's candidate labels (None for a classifier; empty until labels are given)."""
        return list(self.adapter.labels) if self.zero_shot else None

    @property
    def hypothesis_template(self) -> str | list[str] | None:
        """A zero-shot model's prompt template (a list for a prompt ensemble); None for a classifier."""
        return template_value(self.adapter.text.templates) if self.zero_shot else None

    def with_candidate_labels(self, candidate_labels: Sequence[str] | None = None,
                              hypothesis_template: str | Sequence[str] | None = None) -> ZeroShotLabels:
        """This explainer with other candidate labels and/or template (the ones not given are kept); the
        model, processor and options are shared, the text features computed once per label set."""
        if not self.zero_shot:
            refuse_classifier_labels(self.name, self.num_labels)
        labels = self.adapter.labels if candidate_labels is None else candidate_labels
        template = self.adapter.text.templates if hypothesis_template is None else hypothesis_template
        text = self._candidate_texts().get(labels, template)  # before the copy: the copy shares the cache
        other = copy.copy(self)
        other.adapter = self.adapter.with_text(text)
        check_candidate_reward(other.adapter.link, other.num_labels, self.reward)
        return other

    def labelled(self, candidate_labels=None, hypothesis_template=None) -> ZeroShotLabels:
        """The explainer a call uses: this one, or with the call's own labels/template (they win); a MoXIError
        when a zero-shot model has no candidate labels at all."""
        explainer = self
        if candidate_labels is not None or hypothesis_template is not None:
            explainer = self.with_candidate_labels(candidate_labels, hypothesis_template)
        if explainer.zero_shot and not explainer.adapter.labels:
            # a pipeline's explainer leaves aside the labels a config records: the pipeline has none of its own
            why = "was given no" if default_candidates(self.model.config) else "ships no default"
            raise MoXIError(f"{self.name!r} is a zero-shot model and {why} candidate labels: give candidate labels "
                            "(candidate_labels=[...] in Python, --labels on the command line)")
        return explainer
