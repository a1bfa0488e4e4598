"""The zero-shot game: candidate logits over coalitions, equal to the stock pipeline on the whole image."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoTokenizer, pipeline
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from helpers import save_image_text_checkpoint, tiny_image_text_config, tiny_model
from moxi_hf import MoXIError, ValueFunction
from moxi_hf.engine import FastEncoder
from moxi_hf.modeling import TOKEN_CLASSES
from moxi_hf.removal import TokenRemoval
from moxi_hf.value import probabilities
from moxi_hf.zero_shot import (
    CandidateText,
    ZeroShotRemoval,
    check_candidate_labels,
    check_templates,
    default_candidates,
)

LABELS = ["a cat", "a dog", "the digit seven"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def zero_shot_dir(request, tmp_path_factory):
    """A tiny random CLIP or SigLIP folder with a character-level tokenizer and a 16-px processor."""
    return request.param, save_image_text_checkpoint(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture
def image():
    torch.manual_seed(5)
    return Image.fromarray((torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy())


def load(path: str):
    """Our class for the folder's architecture, its tokenizer and processor."""
    model_class = TOKEN_CLASSES[AutoConfig.from_pretrained(path).architectures[0]]
    return model_class.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), \
        ViTImageProcessorPil.from_pretrained(path)


@pytest.mark.parametrize("template", ["This is a photo of {}.", "{}"])
def test_whole_image_scores_equal_the_stock_pipeline(zero_shot_dir, image, template):
    family, path = zero_shot_dir
    model, tokenizer, processor = load(path)
    text = CandidateText.build(model, tokenizer, LABELS, template)
    adapter = ZeroShotRemoval(model, text)
    assert adapter.link == ("sigmoid" if family == "siglip" else "softmax")
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    scores = probabilities(adapter.full_logits(pixel_values), adapter.link)[0]
    classify = pipeline("zero-shot-image-classification", model=path)
    expected = {row["label"]: row["score"] for row in classify(image, candidate_labels=LABELS,
                                                               hypothesis_template=template)}
    got = dict(zip(LABELS, scores.tolist(), strict=True))
    assert got.keys() == expected.keys()
    for label in LABELS:
        assert abs(got[label] - expected[label]) < 1e-5, (label, got, expected)
    if family == "clip":
        assert abs(sum(got.values()) - 1) < 1e-5
    else:  # independent sigmoids need not sum to one
        assert abs(sum(got.values()) - 1) > 1e-3


def test_coalition_logits_equal_the_model_forward_with_the_same_mask(zero_shot_dir, image):
    family, path = zero_shot_dir
    model, tokenizer, processor = load(path)
    adapter = ZeroShotRemoval(model, CandidateText.build(model, tokenizer, LABELS))
    pixel_values = processor([image, image.rotate(90)], return_tensors="pt")["pixel_values"]
    keep = torch.zeros(4, 16, dtype=torch.bool)
    keep[0, [1, 2, 3]] = keep[1, [0, 7, 9]] = keep[2, [4, 5, 15]] = keep[3, [6, 8, 10]] = True
    image_index = torch.tensor([0, 1, 1, 0])
    inputs = tokenizer([f"This is a photo of {label}." for label in LABELS], return_tensors="pt",
                       **({"padding": "max_length", "max_length": 64, "truncation": True} if family == "siglip"
                          else {"padding": True}))
    with torch.no_grad():
        expected = model(**inputs, pixel_values=pixel_values[image_index], embedding_mask=keep).logits_per_image
    fast = adapter.prepare(pixel_values)
    assert fast.encoder is not None  # CLIP and SigLIP layers are fused by the engine
    torch.testing.assert_close(adapter.logits(fast, image_index, keep), expected, rtol=1e-5, atol=1e-5)
    adapter.fast = False
    slow = adapter.prepare(pixel_values)
    assert slow.encoder is None
    torch.testing.assert_close(adapter.logits(slow, image_index, keep), expected, rtol=1e-5, atol=1e-5)
    whole = adapter.logits(slow, torch.tensor([0, 1]), torch.ones(2, 16, dtype=torch.bool))
    torch.testing.assert_close(whole, adapter.full_logits(pixel_values), rtol=1e-5, atol=1e-5)


def test_engine_variants_and_the_empty_coalition(zero_shot_dir, image):
    family, path = zero_shot_dir
    model, tokenizer, processor = load(path)
    adapter = ZeroShotRemoval(model, CandidateText.build(model, tokenizer, LABELS))
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    adapter.fast = False
    slow = adapter.prepare(pixel_values)
    for kept in ([], [5], [0, 3, 9, 12, 15]):
        keep = torch.zeros(1, 16, dtype=torch.bool)
        keep[0, kept] = True
        expected = adapter.logits(slow, torch.zeros(1, dtype=torch.long), keep)
        assert torch.isfinite(expected).all()
        for fused in (True, False):
            for matmul_up_to in (0, 1000):
                encoder = FastEncoder.build(model)
                encoder.fused, encoder.matmul_attention_max_length = fused, matmul_up_to
                got = adapter.logits(dataclasses.replace(slow, encoder=encoder), torch.zeros(1, dtype=torch.long), keep)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_text_features_are_computed_once_per_label_set(zero_shot_dir, image):
    family, path = zero_shot_dir
    model, tokenizer, processor = load(path)
    calls = []
    handle = model.text_model.register_forward_hook(lambda *args: calls.append(1))
    text = CandidateText.build(model, tokenizer, LABELS, ["a photo of {}.", "a drawing of {}.", "{}"])
    assert len(calls) == 3  # one text-tower pass per template
    game = ValueFunction(ZeroShotRemoval(model, text), processor(image, return_tensors="pt")["pixel_values"], [1])
    values = game(torch.rand(40, 16) < 0.5)
    handle.remove()
    assert len(calls) == 3 and values.shape == (40,) and torch.isfinite(values).all()


def test_a_list_of_templates_averages_the_normalised_prompt_features(zero_shot_dir):
    family, path = zero_shot_dir
    model, tokenizer, _ = load(path)
    templates = ["a photo of {}.", "a drawing of {}."]
    ensemble = CandidateText.build(model, tokenizer, LABELS, templates).features
    singles = [CandidateText.build(model, tokenizer, LABELS, template).features for template in templates]
    torch.testing.assert_close(singles[0].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(ensemble, F.normalize(singles[0] + singles[1], dim=-1))
    assert not torch.allclose(singles[0], singles[1])


def test_default_candidates_are_read_from_the_config(zero_shot_dir):
    family, path = zero_shot_dir
    model, _, _ = load(path)
    assert default_candidates(model.config) is None
    model.config.moxi_candidate_labels = ["zero", "one"]
    assert default_candidates(model.config) == (("zero", "one"), ("This is a photo of {}.",))
    model.config.moxi_hypothesis_template = ["a {}", "the {}"]
    assert default_candidates(model.config) == (("zero", "one"), ("a {}", "the {}"))


@pytest.mark.parametrize("labels,message", [
    (None, "needs candidate labels"),
    ([], "needs candidate labels"),
    ("a cat", "a list of texts"),
    (["a cat", " "], "non-empty texts"),
    (["a cat", "a dog", "a cat"], "repeated: 'a cat'"),
])
def test_bad_candidate_labels_are_refused(labels, message):
    with pytest.raises(MoXIError, match=message):
        check_candidate_labels(labels)


@pytest.mark.parametrize("template", ["a photo", "a {} of {}", "a {label}", [], "{} }"])
def test_bad_templates_are_refused(template):
    with pytest.raises(MoXIError, match="template"):
        check_templates(template)


def test_labels_by_text_or_index(zero_shot_dir):
    family, path = zero_shot_dir
    model, tokenizer, _ = load(path)
    text = CandidateText.build(model, tokenizer, LABELS)
    assert text.index("a dog") == 1 and text.index(2) == 2
    with pytest.raises(MoXIError, match="not among the candidates"):
        text.index("a bird")
    with pytest.raises(MoXIError, match="out of range"):
        text.index(3)


def test_classifier_adapter_refuses_a_zero_shot_model_and_the_reverse(zero_shot_dir, tmp_path):
    family, path = zero_shot_dir
    model, tokenizer, _ = load(path)
    with pytest.raises(MoXIError, match="needs candidate labels"):
        TokenRemoval(model)
    text = CandidateText.build(model, tokenizer, LABELS)
    with pytest.raises(MoXIError, match="patch tokens"):
        ZeroShotRemoval(TOKEN_CLASSES["ViTForImageClassification"](tiny_model().config), text)


def test_siglip_without_pooling_head_is_refused(tmp_path):
    config = tiny_image_text_config("siglip")
    config.vision_config.vision_use_head = False
    model = TOKEN_CLASSES["SiglipModel"](config).eval()
    text = CandidateText(("a cat",), ("{}",), torch.ones(1, 32) / 32**0.5)
    with pytest.raises(MoXIError, match="no attention-pooling head"):
        ZeroShotRemoval(model, text)
