"""Explaining CLIP and SigLIP through the Explainer: the loader's decision, labels named by text, every method."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AltCLIPConfig,
    AutoTokenizer,
    CLIPForImageClassification,
    CLIPModel,
    CLIPVisionModel,
    SiglipForImageClassification,
    SiglipModel,
    SiglipVisionModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
    pipeline,
)
from transformers.models.siglip2 import Siglip2Config
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from helpers import TINY, save_checkpoint, save_image_text_checkpoint, tiny_image_text_config
from moxi_hf import Explainer, Explanation, MoXIError, TokenRemoval, load_artifacts
from moxi_hf.artifacts import save_explanations
from moxi_hf.options import METHOD_NAMES
from moxi_hf.zero_shot import ZeroShotRemoval

LABELS = ["a cat", "a dog", "the digit seven"]
STOCK = {"clip": CLIPModel, "siglip": SiglipModel}


@pytest.fixture(scope="module", params=["clip", "siglip"])
def zero_shot_dir(request, tmp_path_factory):
    return request.param, save_image_text_checkpoint(request.param, tmp_path_factory.mktemp(request.param))


def random_image(seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(16, 16, 3, generator=generator) * 255).to(torch.uint8).numpy())


@pytest.fixture
def image():
    return random_image(5)


def pipeline_scores(path: str, image, labels, template) -> dict[str, float]:
    classify = pipeline("zero-shot-image-classification", model=path)
    return {row["label"]: row["score"] for row in classify(image, candidate_labels=labels, hypothesis_template=template)}


def prompts(family: str, path: str, labels, template: str) -> dict:
    """The prompts tokenised as the zero-shot pipeline does for this family."""
    padding = {"padding": "max_length", "max_length": 64, "truncation": True} if family == "siglip" else {"padding": True}
    return AutoTokenizer.from_pretrained(path)([template.format(label) for label in labels], return_tensors="pt",
                                               **padding)


# -- the loader decides by the checkpoint -------------------------------------------------------------------------


def test_clip_and_siglip_are_zero_shot_with_token_removal(zero_shot_dir):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    assert explainer.zero_shot and isinstance(explainer.adapter, ZeroShotRemoval)
    assert explainer.adapter.masking == "token" and explainer.adapter.grid == (4, 4)
    assert explainer.adapter.link == ("sigmoid" if family == "siglip" else "softmax")
    assert explainer.adapter.decision == "argmax"  # "predicted" is the top candidate for both families
    assert explainer.candidate_labels == LABELS and explainer.label_names() == LABELS
    assert [explainer.label_name(index) for index in range(3)] == LABELS
    assert explainer.hypothesis_template == "This is a photo of {}."


@pytest.mark.parametrize("stock,family", [(CLIPForImageClassification, "clip"), (SiglipForImageClassification, "siglip")])
def test_trained_classification_heads_are_classifiers_with_token_removal(stock, family, tmp_path, image, capfd):
    torch.manual_seed(0)
    path = save_checkpoint(stock(tiny_image_text_config(family, num_labels=3)).eval(), tmp_path)
    explainer = Explainer.from_pretrained(path)
    assert not explainer.zero_shot and explainer.candidate_labels is None and explainer.hypothesis_template is None
    assert type(explainer.adapter) is TokenRemoval and explainer.adapter.masking == "token"
    explanation = explainer.explain(image, "self-shapley")
    assert sorted(explanation.order) == list(range(16)) and "candidate_labels" not in explanation.to_dict()
    capfd.readouterr()
    explainer.explain(image, "attention-rollout")  # no text tower to switch to eager attention: nothing said
    assert "sub-config" not in capfd.readouterr().err
    with pytest.raises(MoXIError, match="is a classifier with its own 3 classes"):
        Explainer.from_pretrained(path, candidate_labels=["a cat", "a dog"])
    with pytest.raises(MoXIError, match="is a classifier with its own 3 classes"):
        explainer.explain(image, candidate_labels=["a cat", "a dog"])


def test_a_head_transformers_would_initialise_is_refused_quietly(tmp_path, capfd):
    clip = tmp_path / "clip"
    save_image_text_checkpoint("clip", clip)
    config = json.loads((clip / "config.json").read_text())
    (clip / "config.json").write_text(json.dumps(config | {"architectures": ["CLIPForImageClassification"]}))
    with pytest.raises(MoXIError, match=r"^'.*' has no trained classification head .* give candidate labels to "
                                        r"explain it$"):
        Explainer.from_pretrained(str(clip))
    # as the line says: with candidate labels its weights (a text tower, no head) are explained zero-shot
    assert Explainer.from_pretrained(str(clip), candidate_labels=LABELS).zero_shot
    vit = save_checkpoint(ViTModel(ViTConfig(**TINY)), tmp_path / "vit")
    with pytest.raises(MoXIError, match="has no trained classifier: transformers would initialise classifier"):
        Explainer.from_pretrained(vit)
    assert "LOAD REPORT" not in capfd.readouterr().err  # transformers' report is read, not printed


@pytest.mark.parametrize("build,expected", [
    (lambda: CLIPVisionModel(tiny_image_text_config("clip").vision_config), "bare CLIP vision tower .* CLIPModel"),
    (lambda: SiglipVisionModel(tiny_image_text_config("siglip").vision_config), "bare Siglip vision tower"),
    (lambda: AltCLIPConfig(), "AltCLIP checkpoints are not supported; moxi-hf explains CLIP"),
    (lambda: Siglip2Config(), "NaFlex SigLIP 2 checkpoints .* are not supported"),
])
def test_towers_and_other_families_are_refused_in_one_line(build, expected, tmp_path):
    built = build()
    if hasattr(built, "to_json_string"):  # a config alone: the refusal comes before any weight is read
        built.save_pretrained(tmp_path)
    else:
        save_checkpoint(built, tmp_path)
    with pytest.raises(MoXIError, match=expected) as refused:
        Explainer.from_pretrained(str(tmp_path))
    assert "\n" not in str(refused.value)


def test_a_stock_model_is_shared_not_copied(zero_shot_dir, image):
    family, path = zero_shot_dir
    stock = STOCK[family].from_pretrained(path).eval()
    explainer = Explainer(stock, ViTImageProcessorPil.from_pretrained(path), tokenizer=AutoTokenizer.from_pretrained(path),
                          candidate_labels=LABELS)
    assert type(stock) is STOCK[family] and explainer.model is not stock
    assert [p.data_ptr() for p in explainer.model.parameters()] == [p.data_ptr() for p in stock.parameters()]
    loaded = Explainer.from_pretrained(path, candidate_labels=LABELS)
    assert explainer.explain(image).order == loaded.explain(image).order
    with pytest.raises(MoXIError, match="needs its tokenizer"):
        Explainer(stock, ViTImageProcessorPil.from_pretrained(path))
    classifier = ViTForImageClassification(ViTConfig(**TINY)).eval()
    assert next(Explainer(classifier).model.parameters()).data_ptr() == next(classifier.parameters()).data_ptr()


# -- the labels -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["a photo of {}.", "{}"])
def test_whole_image_probabilities_equal_the_pipeline(zero_shot_dir, image, template):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS, hypothesis_template=template)
    expected = pipeline_scores(path, image, LABELS, template)
    top = max(expected, key=expected.get)
    found = explainer.explain(image, "self-shapley")
    assert found.label_name == found.candidate_labels[found.label] == top  # default: the top candidate
    for label in LABELS:  # insertion ends with every patch: the whole image
        explained = explainer.explain(image, "self-shapley", label=label)
        assert explained.label == LABELS.index(label) and explained.label_name == label
        assert abs(explained.curve_probabilities[-1] - expected[label]) < 1e-5, (label, explained, expected)
    assert explainer.explain(image, "self-shapley", label=2).label_name == LABELS[2]


def test_labels_of_a_call_win_and_their_text_is_read_once(zero_shot_dir, image):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    calls = []
    hook = explainer.model.text_model.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = explainer.explain(image, "self-shapley", candidate_labels=["a dog", "a cat"])
        second = explainer.explain(image, "moxi", candidate_labels=["a dog", "a cat"], label="a cat")
        assert len(calls) == 1  # one label set, one template: one text-tower pass for both calls
        ensemble = explainer.explain(image, "self-shapley", hypothesis_template=["a {}", "the {}"])
        assert len(calls) == 3
    finally:
        hook.remove()
    assert first.candidate_labels == second.candidate_labels == ["a dog", "a cat"] and second.label_name == "a cat"
    assert ensemble.candidate_labels == LABELS and ensemble.hypothesis_template == ["a {}", "the {}"]
    assert explainer.candidate_labels == LABELS and explainer.hypothesis_template == "This is a photo of {}."
    expected = pipeline_scores(path, image, ["a dog", "a cat"], "This is a photo of {}.")
    assert abs(second.curve_probabilities[-1] - expected["a cat"]) < 1e-5


@pytest.mark.parametrize("keywords,message", [
    ({"candidate_labels": []}, "needs candidate labels"),
    ({"candidate_labels": ["a cat", "a cat"]}, "repeated: 'a cat'"),
    ({"candidate_labels": "a cat"}, "a list of texts"),
    ({"hypothesis_template": "a photo"}, "must contain '{}' exactly once"),
    ({"masking": "pixel"}, "token removal only"),
])
def test_bad_zero_shot_arguments_get_one_line(zero_shot_dir, keywords, message, image):
    family, path = zero_shot_dir
    with pytest.raises(MoXIError, match=message):
        Explainer.from_pretrained(path, **{"candidate_labels": LABELS, **keywords})
    if "masking" not in keywords:
        with pytest.raises(MoXIError, match=message):
            Explainer.from_pretrained(path, candidate_labels=LABELS).explain(image, **keywords)


def test_a_label_must_be_a_candidate(zero_shot_dir, image):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    with pytest.raises(MoXIError, match="'a bird' is not among the candidates: 'a cat', 'a dog'"):
        explainer.explain(image, label="a bird")
    with pytest.raises(MoXIError, match="out of range: there are 3 candidate labels"):
        explainer.explain(image, label=3)


def test_a_model_without_labels_is_told_to_get_some(zero_shot_dir, image):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path)  # this folder records no default labels
    assert explainer.zero_shot and explainer.candidate_labels == []
    with pytest.raises(MoXIError, match="ships no default candidate labels: give candidate labels"):
        explainer.explain(image)
    assert explainer.explain(image, "self-shapley", candidate_labels=["a cat", "a dog"]).candidate_labels == ["a cat",
                                                                                                              "a dog"]


def test_one_label_alone_is_a_retrieval_score(zero_shot_dir, image):
    family, path = zero_shot_dir
    if family == "clip":  # a softmax over one candidate is always 1
        with pytest.raises(MoXIError, match="one candidate label alone has nothing to be compared with"):
            Explainer.from_pretrained(path, candidate_labels=["a cat"])
        with pytest.raises(MoXIError, match="use the logit reward"):
            Explainer.from_pretrained(path, candidate_labels=LABELS).explain(image, candidate_labels=["a cat"])
    else:  # SigLIP's log-odds of a label is its own logit, whatever the other candidates
        alone = Explainer.from_pretrained(path, candidate_labels=["a cat"]).explain(image, "self-shapley")
        among = Explainer.from_pretrained(path, candidate_labels=LABELS).explain(image, "self-shapley", label="a cat")
        np.testing.assert_allclose(alone.scores, among.scores, rtol=1e-5, atol=1e-6)
    explained = Explainer.from_pretrained(path, candidate_labels=["a cat"], reward="logit").explain(image, "moxi")
    assert explained.label == explained.predicted == 0 and sorted(explained.order) == list(range(16))


# -- every method -------------------------------------------------------------------------------------------------


def test_every_method_applies_and_explains(zero_shot_dir):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    assert explainer.applicable_methods() == list(METHOD_NAMES)
    images = [random_image(1), random_image(2)]
    batch = explainer.explain_methods(images, METHOD_NAMES, ["insertion", "deletion"], labels=["a dog", None],
                                      options={"full-shapley": {"num_samples": 3}}, interactions=True)
    assert batch.labels[0] == 1
    for (method, curve), explanations in batch.explanations.items():
        for explanation in explanations:
            assert sorted(explanation.order) == list(range(16)), (method, curve)
            assert explanation.candidate_labels == LABELS and explanation.interactions is not None
            assert len(explanation.curve_probabilities) == 17
    gains = batch[("moxi", "insertion")][0].gains
    np.testing.assert_allclose(np.add(gains["self"], gains["interaction"]), gains["total"], atol=1e-5)


def _reference_cam(family: str, path: str, image, label: int, reward: str) -> torch.Tensor:
    """Grad-CAM (16,) from the stock model: the gradient of the reward over the candidates at the last layer's
    first LayerNorm."""
    stock = STOCK[family].from_pretrained(path).eval()
    pixel_values = ViTImageProcessorPil.from_pretrained(path)(image, return_tensors="pt")["pixel_values"]
    captured = []
    hook = stock.vision_model.encoder.layers[-1].layer_norm1.register_forward_hook(lambda m, i, o: captured.append(o))
    logits = stock(**prompts(family, path, LABELS, "This is a photo of {}."), pixel_values=pixel_values).logits_per_image
    hook.remove()
    z = logits[0]
    if reward == "log-odds" and family == "clip":  # against the other candidates
        target = z[label] - torch.logsumexp(torch.cat([z[:label], z[label + 1:]]), 0)
    else:  # CLIP's logit, SigLIP's own logit (its log-odds)
        target = z[label]
    (gradient,) = torch.autograd.grad(target, captured[0])
    special = 1 if family == "clip" else 0
    activations, gradients = captured[0][0, special:].detach(), gradient[0, special:]
    return (activations * gradients.mean(0)).sum(1).clamp(min=0)


@pytest.mark.parametrize("reward", ["log-odds", "logit"])
def test_gradcam_differentiates_the_chosen_reward(zero_shot_dir, image, reward):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS, reward=reward)
    scores = torch.tensor(explainer.explain(image, "gradcam", label="a dog").scores)
    torch.testing.assert_close(scores, _reference_cam(family, path, image, 1, reward), rtol=1e-4, atol=1e-6)
    if family == "clip" and reward == "log-odds":  # the contrast with the other candidates changes the map
        assert not torch.allclose(scores, _reference_cam(family, path, image, 1, "logit"), rtol=1e-3, atol=1e-5)


def test_attention_rollout_follows_what_the_image_feature_reads(zero_shot_dir, image):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    scores = torch.tensor(explainer.explain(image, "attention-rollout").scores)
    stock = STOCK[family].from_pretrained(path, attn_implementation="eager").eval()
    pixel_values = ViTImageProcessorPil.from_pretrained(path)(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        outputs = stock.vision_model(pixel_values=pixel_values, output_attentions=True)
        joint = torch.eye(outputs.attentions[0].shape[-1])
        for attention in outputs.attentions:
            mixed = attention[0].mean(0) + torch.eye(joint.shape[0])
            joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
        if family == "clip":  # the image feature is CLS
            expected = joint[0, 1:]
        else:  # the pooling head's probe attends over the last layer's tokens
            head = stock.vision_model.head
            _, probe = head.attention(head.probe, outputs.last_hidden_state, outputs.last_hidden_state)
            expected = probe[0, 0] @ joint
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)


# -- what is recorded ---------------------------------------------------------------------------------------------


def test_explanations_rows_and_config_record_the_labels_and_templates(zero_shot_dir, image, tmp_path):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS, hypothesis_template=["a {}", "the {}"])
    explanation = explainer.explain(image, "self-shapley", label="a dog")
    data = explanation.to_dict()
    assert data["candidate_labels"] == LABELS and data["hypothesis_template"] == ["a {}", "the {}"]
    assert data["label_name"] == "a dog" and Explanation.from_dict(data) == explanation
    explanation.image = "img.png"
    save_explanations(tmp_path, [explanation], model=path, label_names=explainer.label_names())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["candidate_labels"] == LABELS and config["hypothesis_template"] == ["a {}", "the {}"]
    loaded = load_artifacts(tmp_path)
    assert loaded.rows[0]["candidate_labels"] == LABELS and loaded.rows[0]["hypothesis_template"] == ["a {}", "the {}"]
    back = loaded.explanations()[0]
    assert (back.candidate_labels, back.hypothesis_template, back.label_name) == (LABELS, ["a {}", "the {}"], "a dog")
    card = (tmp_path / "README.md").read_text()
    assert "zero-shot-image-classification" in card and "| candidate_labels |" in card


def test_a_classifier_folder_has_no_zero_shot_columns(vit_dir, image, tmp_path):
    explanation = Explainer.from_pretrained(vit_dir).explain(image, "self-shapley")
    explanation.image = "img.png"
    save_explanations(tmp_path, [explanation])
    assert "candidate_labels" not in load_artifacts(tmp_path).rows.column_names
    assert "candidate_labels" not in json.loads((tmp_path / "config.json").read_text())



def test_processed_pixel_values_are_checked_against_the_vision_tower(zero_shot_dir):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    assert sorted(explainer.explain(torch.randn(3, 16, 16), "self-shapley").order) == list(range(16))
    with pytest.raises(MoXIError, match="channel"):
        explainer.explain(torch.randn(1, 16, 16), "self-shapley")
    pytest.importorskip("shapiq")
    with pytest.raises(MoXIError, match="channel"):  # the shapiq game reads its input the same way
        explainer.game(torch.randn(1, 16, 16))


def test_explainers_derived_for_a_call_share_the_text_cache(zero_shot_dir, image):
    family, path = zero_shot_dir
    explainer = Explainer.from_pretrained(path, candidate_labels=LABELS)
    calls = []
    hook = explainer.model.text_model.register_forward_hook(lambda *args: calls.append(1))
    try:
        derived = explainer.with_candidate_labels(["a cat", "a dog"])
        derived.with_candidate_labels(LABELS[::-1])
        explainer.with_candidate_labels(LABELS[::-1])
        derived.explain(image, "self-shapley", candidate_labels=["a cat", "a dog"])
    finally:
        hook.remove()
    assert len(calls) == 2  # two label sets, each read once whichever explainer asked
