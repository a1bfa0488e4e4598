"""Classifier, zero-shot or refused: decided by the checkpoint (its config and what its weights fill)."""

from __future__ import annotations

import json

import pytest
from transformers import (
    AltCLIPConfig,
    ChineseCLIPConfig,
    CLIPForImageClassification,
    CLIPModel,
    CLIPVisionConfig,
    SiglipForImageClassification,
    SiglipModel,
    SiglipVisionConfig,
    ViTConfig,
    ViTModel,
)
from transformers.models.siglip2 import Siglip2Config

from helpers import TINY, tiny_image_text_config
from moxi_hf import MoXIError
from moxi_hf.kinds import CLASSIFIER, ZERO_SHOT, check_loaded_weights, checkpoint_kind, refusal
from moxi_hf.modeling import TOKEN_CLASSES


def save(model, path, architectures: list[str] | None = None) -> str:
    """``model`` saved to ``path``; ``architectures`` rewrites what its config.json claims."""
    model.save_pretrained(path)
    if architectures is not None:
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps(config | {"architectures": architectures}))
    return str(path)


def load_with_info(path: str):
    """The kind the config says, and the loading info of the MoXI class chosen for it."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    kind = checkpoint_kind(config)
    name = next((name for name in config.architectures or [] if name in TOKEN_CLASSES), None)
    if name is None:  # what the loader does for a classifier it cannot name: the model type's classifier
        name = {"clip": "CLIPForImageClassification", "vit": "ViTForImageClassification"}[config.model_type]
        if kind == ZERO_SHOT:
            name = "CLIPModel"
    _, info = TOKEN_CLASSES[name].from_pretrained(path, output_loading_info=True)
    return config, kind, info


@pytest.mark.parametrize("stock,family,overrides,kind", [
    (CLIPModel, "clip", {}, ZERO_SHOT),
    (SiglipModel, "siglip", {}, ZERO_SHOT),
    (CLIPForImageClassification, "clip", {"num_labels": 3}, CLASSIFIER),
    (SiglipForImageClassification, "siglip", {"num_labels": 3}, CLASSIFIER),
])
def test_trained_checkpoints_are_classifiers_or_zero_shot(stock, family, overrides, kind, tmp_path):
    path = save(stock(tiny_image_text_config(family, **overrides)), tmp_path)
    config, got, info = load_with_info(path)
    assert got == kind
    check_loaded_weights(path, config, info, got)  # complete: nothing to refuse


def test_a_clip_config_without_architectures_is_zero_shot():
    config = tiny_image_text_config("clip")
    config.architectures = None
    assert checkpoint_kind(config) == ZERO_SHOT


def test_a_zero_shot_checkpoint_declared_as_a_classifier_is_refused_with_a_hint_for_labels(tmp_path):
    # a config that claims a head its weights do not have
    path = save(CLIPModel(tiny_image_text_config("clip")), tmp_path, ["CLIPForImageClassification"])
    config, kind, info = load_with_info(path)
    assert kind == CLASSIFIER and info["missing_keys"] == {"classifier.weight", "classifier.bias"}
    with pytest.raises(MoXIError, match="no trained classification head .* give candidate labels"):
        check_loaded_weights(path, config, info, kind)


def test_a_backbone_without_classifier_is_refused(tmp_path):
    path = save(ViTModel(ViTConfig(**TINY)), tmp_path)
    config, kind, info = load_with_info(path)
    assert kind == CLASSIFIER
    with pytest.raises(MoXIError, match="has no trained classifier: transformers would initialise classifier"):
        check_loaded_weights(path, config, info, kind)


def test_a_classifier_checkpoint_given_as_zero_shot_is_refused(tmp_path):
    path = save(CLIPForImageClassification(tiny_image_text_config("clip", num_labels=3)), tmp_path, ["CLIPModel"])
    config, kind, info = load_with_info(path)
    assert kind == ZERO_SHOT
    with pytest.raises(MoXIError, match="not a complete zero-shot clip checkpoint"):
        check_loaded_weights(path, config, info, kind)


@pytest.mark.parametrize("config,architecture,expected", [
    (CLIPVisionConfig(), "CLIPVisionModel", "bare CLIP vision tower .* load the full CLIPModel"),
    (CLIPVisionConfig(), "CLIPVisionModelWithProjection", "bare CLIP vision tower .* load the full CLIPModel"),
    (SiglipVisionConfig(), "SiglipVisionModel", "bare Siglip vision tower .* load the full SiglipModel"),
    (Siglip2Config(), "Siglip2Model", "NaFlex SigLIP 2 .* fixed-resolution SigLIP 2"),
    (AltCLIPConfig(), "AltCLIPModel", "AltCLIP checkpoints are not supported; moxi-hf explains CLIP"),
    (ChineseCLIPConfig(), "ChineseCLIPModel", "Chinese-CLIP checkpoints are not supported"),
])
def test_refused_checkpoints_get_one_line(config, architecture, expected):
    config.architectures = [architecture]
    assert "\n" not in refusal(config)
    with pytest.raises(MoXIError, match=expected):
        checkpoint_kind(config)
    config.architectures = None  # the model type alone is enough
    with pytest.raises(MoXIError, match=expected.split(" .*")[0]):
        checkpoint_kind(config)


def test_vit_classifiers_are_not_refused():
    config = ViTConfig(**TINY)
    config.architectures = ["ViTForImageClassification"]
    assert refusal(config) is None and checkpoint_kind(config) == CLASSIFIER
