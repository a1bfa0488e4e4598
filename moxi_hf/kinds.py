"""Which game a checkpoint plays, decided by the checkpoint: a classifier, a zero-shot model, or refused.

- A trained ``…ForImageClassification`` head: a classifier (its logits are the classes).
- ``CLIPModel`` / ``SiglipModel``: zero-shot (the classes are candidate labels given as text).
- Anything whose weights transformers would have to initialise (a classification head "newly
  initialized", a missing tower) is refused: explaining random weights is a silent wrong answer.
- Bare vision towers, NaFlex SigLIP 2 and other zero-shot families are refused with one line
  saying what to load instead.

These are pure functions of a config and of the loading info ``from_pretrained(...,
output_loading_info=True)`` returns, so the loader calls them and tests check every case.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import MoXIError
from .modeling import TOKEN_CLASSES, TokenRemovalImageText

__all__ = ["CLASSIFIER", "ZERO_SHOT", "ZERO_SHOT_CLASSES", "checkpoint_kind", "check_loaded_weights",
           "is_image_text_type", "refusal", "zero_shot_class", "zero_shot_weights"]

CLASSIFIER = "classifier"
ZERO_SHOT = "zero-shot"
#: Stock class names of the zero-shot models moxi-hf explains (CLIPModel, SiglipModel).
ZERO_SHOT_CLASSES = tuple(name for name, cls in TOKEN_CLASSES.items() if issubclass(cls, TokenRemovalImageText))
_ZERO_SHOT_MODEL_TYPES = {TOKEN_CLASSES[name].config_class.model_type: name for name in ZERO_SHOT_CLASSES}
_WHAT_WORKS = ("CLIP (CLIPModel) and SigLIP (SiglipModel, including fixed-resolution SigLIP 2) zero-shot models, "
               "and image classifiers")
#: Bare vision towers (no text tower, no head) -> the checkpoint to load instead.
_BARE_TOWERS = {
    "CLIPVisionModel": "CLIPModel", "CLIPVisionModelWithProjection": "CLIPModel", "SiglipVisionModel": "SiglipModel",
    "clip_vision_model": "CLIPModel", "siglip_vision_model": "SiglipModel",
}
#: Zero-shot families without token removal here: model_type -> their name.
_OTHER_ZERO_SHOT = {
    "altclip": "AltCLIP", "chinese_clip": "Chinese-CLIP", "align": "ALIGN", "blip": "BLIP", "blip-2": "BLIP-2",
    "clipseg": "CLIPSeg", "metaclip_2": "MetaCLIP 2", "tipsv2": "TIPSv2", "videoprism": "VideoPrism",
    "owlvit": "OWL-ViT", "owlv2": "OWLv2", "x_clip": "X-CLIP",
}


def _architectures(config) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def refusal(config) -> str | None:
    """One line saying why a checkpoint with this config cannot be explained and what to load instead, or None."""
    model_type = getattr(config, "model_type", None)
    names = _architectures(config)
    for key in [*names, model_type]:
        if key in _BARE_TOWERS:
            full = _BARE_TOWERS[key]
            return (f"a bare {full.removesuffix('Model')} vision tower ({key}) has no text tower and no classification "
                    f"head, so it cannot be explained alone; load the full {full} checkpoint it comes from (zero-shot, "
                    "with candidate labels) or a fine-tuned …ForImageClassification checkpoint")
    if model_type == "siglip2":
        return ("NaFlex SigLIP 2 checkpoints (Siglip2Model, a patch grid per image) are not supported; the "
                "fixed-resolution SigLIP 2 checkpoints (model_type 'siglip', loaded as SiglipModel) are")
    if model_type in _OTHER_ZERO_SHOT:
        return (f"{_OTHER_ZERO_SHOT[model_type]} checkpoints are not supported; moxi-hf explains {_WHAT_WORKS}")
    return None


def checkpoint_kind(config) -> str:
    """:data:`ZERO_SHOT` for CLIPModel/SiglipModel checkpoints, :data:`CLASSIFIER` otherwise; raises
    :class:`MoXIError` with :func:`refusal`'s line for a checkpoint that cannot be explained.

    ``architectures`` decides; a config without it is zero-shot when its model type is CLIP's or
    SigLIP's (:func:`check_loaded_weights` then catches a checkpoint that was something else).
    """
    reason = refusal(config)
    if reason:
        raise MoXIError(reason)
    names = _architectures(config)
    if any(name in ZERO_SHOT_CLASSES for name in names):
        return ZERO_SHOT
    if not names and getattr(config, "model_type", None) in _ZERO_SHOT_MODEL_TYPES:
        return ZERO_SHOT
    return CLASSIFIER


def zero_shot_class(config) -> type[TokenRemovalImageText]:
    """The MoXI image-text class a zero-shot checkpoint loads as: the one its ``architectures`` names, else its
    model type's (``CLIPModel`` for CLIP, ``SiglipModel`` for SigLIP)."""
    for name in _architectures(config):
        if name in ZERO_SHOT_CLASSES:
            return TOKEN_CLASSES[name]
    return TOKEN_CLASSES[_ZERO_SHOT_MODEL_TYPES[config.model_type]]


def is_image_text_type(config) -> bool:
    """A CLIP or SigLIP config (whatever architecture it names): its checkpoint may be zero-shot."""
    return getattr(config, "model_type", None) in _ZERO_SHOT_MODEL_TYPES


def zero_shot_weights(loading_info: dict) -> bool:
    """Loaded as a classifier, the weights lack its head but hold a text tower: a zero-shot checkpoint whose
    config names a classification head."""
    unexpected = loading_info.get("unexpected_keys") or ()
    return bool(_missing(loading_info)) and any(key.startswith("text_model.") for key in unexpected)


def _missing(loading_info: dict) -> list[str]:
    keys: Iterable = loading_info.get("missing_keys") or ()
    mismatched = [entry[0] if isinstance(entry, tuple) else entry for entry in loading_info.get("mismatched_keys") or ()]
    return sorted({*keys, *mismatched})


def check_loaded_weights(name: str, config, loading_info: dict, kind: str) -> None:
    """Refuse a loaded checkpoint whose weights transformers initialised (missing or resized keys).

    ``loading_info`` is what ``from_pretrained(..., output_loading_info=True)`` returned; ``kind`` is
    what :func:`checkpoint_kind` decided. A classifier with a new head is refused with a line that,
    for CLIP and SigLIP, says to give candidate labels instead.
    """
    missing = _missing(loading_info)
    if not missing:
        return
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    model_type = getattr(config, "model_type", None)
    if kind == ZERO_SHOT:
        raise MoXIError(f"{name!r} is not a complete zero-shot {model_type} checkpoint: transformers would "
                        f"initialise {shown} at random")
    if model_type in _ZERO_SHOT_MODEL_TYPES:
        raise MoXIError(f"{name!r} has no trained classification head (transformers would initialise {shown} at "
                        f"random); it is a zero-shot {_ZERO_SHOT_MODEL_TYPES[model_type]} checkpoint: give candidate "
                        "labels to explain it")
    raise MoXIError(f"{name!r} has no trained classifier: transformers would initialise {shown} at random; "
                    "load a checkpoint fine-tuned for image classification")
