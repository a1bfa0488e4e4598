"""Zero-shot pipelines: Explainer.from_pipeline on zero-shot-image-classification, and image-explanation of CLIP/SigLIP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, SiglipModel, pipeline

import moxi_hf.pipelines  # noqa: F401 - registers the task
from helpers import save_image_text_checkpoint
from moxi_hf import Explainer, MoXIError
from moxi_hf.modeling import MoXICLIPModel, MoXISiglipModel

REPO = Path(__file__).resolve().parents[1]
CLIP_MNIST = str(REPO / "models" / "moxi-clip-mnist")
DIGITS = sorted((REPO / "models" / "moxi-clip-mnist" / "samples").glob("*.png"))
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_TEMPLATE = "a photo of the digit {}."
LABELS = ["a cat", "a dog", "the digit seven"]
STOCK = {"clip": CLIPModel, "siglip": SiglipModel}
MOXI_CLASS = {"clip": MoXICLIPModel, "siglip": MoXISiglipModel}


@pytest.fixture(scope="module", params=["clip", "siglip"])
def zero_shot_dir(request, tmp_path_factory):
    return request.param, save_image_text_checkpoint(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def explain_clip_digits():
    return pipeline("image-explanation", model=CLIP_MNIST, device="cpu")


def pictures(count: int = 3, seed: int = 7) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(16, 16, 3, generator=generator) * 255).to(torch.uint8).numpy())
            for _ in range(count)]


def whole_image_probability(explanation) -> float:
    """p(label) with every player present: the last point of an insertion curve."""
    assert explanation.curve == "insertion" and len(explanation.order) == len(explanation.curve_probabilities) - 1
    return explanation.curve_probabilities[-1]


def stock_scores(pipe, image, labels) -> list[dict]:
    return pipe(image, candidate_labels=labels)


def digit_name(path: Path) -> str:
    """The candidate label of a sample digit (``digit_7_3517.png`` -> ``seven``)."""
    return DIGIT_NAMES[int(path.stem.split("_")[1])]


def key(results) -> list:
    return [[(entry["label"], entry["score"], entry["order"], entry["patches_needed"]) for entry in result]
            for result in results]


# -- Explainer.from_pipeline ----------------------------------------------------------------------


def test_from_a_zero_shot_pipeline_shares_the_weights_and_leaves_the_pipeline_unchanged(zero_shot_dir):
    family, path = zero_shot_dir
    pipe = pipeline("zero-shot-image-classification", model=path, device="cpu")
    images = pictures()
    config = pipe.model.config.to_dict()
    before = [stock_scores(pipe, image, LABELS) for image in images]

    explainer = Explainer.from_pipeline(pipe, candidate_labels=LABELS)
    assert {parameter.data_ptr() for parameter in explainer.model.parameters()} == \
        {parameter.data_ptr() for parameter in pipe.model.parameters()}
    assert isinstance(explainer.model, MOXI_CLASS[family]) and explainer.model is not pipe.model
    assert explainer.tokenizer is pipe.tokenizer and explainer.processor is pipe.image_processor
    assert explainer.hypothesis_template == "This is a photo of {}." and explainer.candidate_labels == LABELS
    batch = explainer.explain_methods(images, ["moxi", "self-shapley"], ["insertion"])

    assert type(pipe.model) is STOCK[family] and pipe.model.config.to_dict() == config and not pipe.model.training
    assert all(not module._forward_hooks for module in pipe.model.modules())
    assert [stock_scores(pipe, image, LABELS) for image in images] == before
    for image, scores in enumerate(before):
        explanation = batch[("moxi", "insertion")][image]
        assert explainer.label_name(explanation.label) == scores[0]["label"]  # the pipeline's top label
        assert whole_image_probability(explanation) == pytest.approx(scores[0]["score"], abs=1e-5)


@pytest.mark.parametrize("model", ["clip", "siglip", "moxi-clip-mnist"])
def test_every_labels_whole_image_probability_is_the_pipelines_score(model, request):
    if model == "moxi-clip-mnist":
        # a template given when the pipeline is built is the pipeline's own, and the explainer's
        pipe = pipeline("zero-shot-image-classification", model=CLIP_MNIST, device="cpu",
                        hypothesis_template=DIGIT_TEMPLATE)
        family, labels, images, template = "clip", DIGIT_NAMES, [Image.open(digit) for digit in DIGITS], DIGIT_TEMPLATE
    else:
        path = save_image_text_checkpoint(model, request.getfixturevalue("tmp_path") / model)
        pipe = pipeline("zero-shot-image-classification", model=path, device="cpu")
        family, labels, images, template = model, LABELS, pictures(), "This is a photo of {}."
    explainer = Explainer.from_pipeline(pipe, candidate_labels=labels)
    # CLIP: a softmax over the candidates; SigLIP: a sigmoid per candidate, as the pipeline scores them
    assert explainer.adapter.link == {"clip": "softmax", "siglip": "sigmoid"}[family]
    assert explainer.hypothesis_template == template
    scores = [{row["label"]: row["score"] for row in stock_scores(pipe, image, labels)} for image in images]
    for index, label in enumerate(labels):
        found = explainer.explain_batch(images, method="self-shapley", labels=[index] * len(images))
        for image, explanation in enumerate(found):
            assert whole_image_probability(explanation) == pytest.approx(scores[image][label], abs=1e-5)
    top = [stock_scores(pipe, image, labels)[0]["label"] for image in images]
    assert [explainer.label_name(explanation.label) for explanation in
            explainer.explain_batch(images, method="self-shapley")] == top
    if model == "moxi-clip-mnist":
        assert top == [digit_name(digit) for digit in DIGITS]


def test_labels_come_with_each_call_and_none_at_all_is_one_line(zero_shot_dir):
    _, path = zero_shot_dir
    pipe = pipeline("zero-shot-image-classification", model=path, device="cpu")
    image = pictures(1)[0]
    explainer = Explainer.from_pipeline(pipe)
    with pytest.raises(MoXIError, match="is a zero-shot model and ships no default candidate labels: give candidate "
                                        "labels") as refused:
        explainer.explain(image)
    assert "\n" not in str(refused.value)
    per_call = explainer.explain(image, candidate_labels=LABELS, hypothesis_template="a picture of {}")
    given = Explainer.from_pipeline(pipe, candidate_labels=LABELS, hypothesis_template="a picture of {}").explain(image)
    assert (per_call.label, per_call.order) == (given.label, given.order)
    scores = pipe(image, candidate_labels=LABELS, hypothesis_template="a picture of {}")
    assert per_call.label_text.endswith(f'("{scores[0]["label"]}")')
    assert whole_image_probability(per_call) == pytest.approx(scores[0]["score"], abs=1e-5)


def test_a_pipeline_leaves_aside_the_labels_its_model_records():
    pipe = pipeline("zero-shot-image-classification", model=CLIP_MNIST, device="cpu")
    explainer = Explainer.from_pipeline(pipe)
    assert explainer.candidate_labels == [] and explainer.hypothesis_template == "This is a photo of {}."
    with pytest.raises(MoXIError, match="is a zero-shot model and was given no candidate labels: give candidate labels"):
        explainer.explain(str(DIGITS[0]))


def test_zero_shot_pipelines_are_refused_in_float16_and_classifiers_refuse_candidate_labels(zero_shot_dir, vit_dir):
    _, path = zero_shot_dir
    half = pipeline("zero-shot-image-classification", model=path, device="cpu", dtype=torch.float16)
    with pytest.raises(MoXIError, match=r"runs in float16.*dtype=torch\.float32") as refused:
        Explainer.from_pipeline(half, candidate_labels=LABELS)
    assert "\n" not in str(refused.value)
    classify = pipeline("image-classification", model=vit_dir, device="cpu")
    with pytest.raises(MoXIError, match="is a classifier with its own 5 classes; candidate labels"):
        Explainer.from_pipeline(classify, candidate_labels=LABELS)


# -- pipeline("image-explanation") on a zero-shot model -------------------------------------------------


def test_the_task_explains_a_zero_shot_model_as_the_stock_pipeline_scores_it(zero_shot_dir):
    family, path = zero_shot_dir
    stock = pipeline("zero-shot-image-classification", model=path, device="cpu")
    explain = pipeline("image-explanation", model=path, device="cpu", candidate_labels=LABELS, method="self-shapley")
    assert type(explain.model) is MOXI_CLASS[family] and explain.explainer.tokenizer is not None  # moxi's loader
    image = pictures(1)[0]
    ranked = stock_scores(stock, image, LABELS)
    found = explain(image, top_k=50)  # clamped to the 3 candidates, as transformers does
    assert [entry["label"] for entry in found] == [entry["label"] for entry in ranked]
    assert [entry["score"] for entry in found] == pytest.approx([entry["score"] for entry in ranked], abs=1e-5)
    for entry in found:
        assert whole_image_probability(entry["explanation"]) == pytest.approx(entry["score"], abs=1e-5)
    assert [entry["label"] for entry in explain(image)] == [ranked[0]["label"]]
    # a call's own labels and template win; one explainer per label set
    others, template = ["a tree", "a car"], "a picture of {}"
    ranked = stock(image, candidate_labels=others, hypothesis_template=template)
    (entry,) = explain(image, candidate_labels=others, hypothesis_template=template)
    assert (entry["label"], entry["score"]) == (ranked[0]["label"], pytest.approx(ranked[0]["score"], abs=1e-5))
    assert explain(image, candidate_labels=others, label="a car")[0]["label"] == "a car"
    assert explain._explainer(others, template) is explain._explainer(tuple(others), template)
    assert explain._explainer(others, template).candidate_labels == others


def test_without_labels_the_task_says_so_in_one_line(zero_shot_dir):
    _, path = zero_shot_dir
    explain = pipeline("image-explanation", model=path, device="cpu")
    for call in ({}, {"hypothesis_template": "a picture of {}"}):
        with pytest.raises(MoXIError, match="is a zero-shot model and ships no default candidate labels") as refused:
            explain(pictures(1)[0], **call)
        assert "\n" not in str(refused.value)
    with pytest.raises(MoXIError, match=r"label 'a bird' is not among the candidates: 'a cat', 'a dog'"):
        explain(pictures(1)[0], candidate_labels=LABELS, label="a bird")
    with pytest.raises(MoXIError, match="function_to_apply is for classifiers"):
        pipeline("image-explanation", model=path, device="cpu", function_to_apply="sigmoid")


def test_a_zero_shot_model_object_needs_its_tokenizer(zero_shot_dir):
    family, path = zero_shot_dir
    model = STOCK[family].from_pretrained(path).eval()
    processor = AutoImageProcessor.from_pretrained(path)
    with pytest.raises(MoXIError, match="needs its tokenizer to read the candidate labels"):
        pipeline("image-explanation", model=model, image_processor=processor, device="cpu")
    explain = pipeline("image-explanation", model=model, image_processor=processor,
                       tokenizer=AutoTokenizer.from_pretrained(path), device="cpu", candidate_labels=LABELS)
    assert type(explain.model) is STOCK[family]  # the object given, shared with the explainer
    assert explain(pictures(1)[0], method="self-shapley")[0]["label"] in LABELS


def test_the_clip_digits_explained_as_a_pipeline_are_the_explainers(explain_clip_digits):
    explainer = Explainer.from_pretrained(CLIP_MNIST)
    orders = [explainer.explain(str(digit)).order for digit in DIGITS]
    results = explain_clip_digits([str(digit) for digit in DIGITS])
    assert [result[0]["order"] for result in results] == orders
    assert [result[0]["label"] for result in results] == [digit_name(digit) for digit in DIGITS]
    for result in results:
        assert whole_image_probability(result[0]["explanation"]) == pytest.approx(result[0]["score"], abs=1e-5)


def test_batches_of_clip_digits_give_the_same_results(explain_clip_digits):
    digits = [str(digit) for digit in DIGITS]
    one = explain_clip_digits(digits, batch_size=1)
    two = explain_clip_digits(digits, batch_size=2)
    assert key(two) == key(one) and [result[0]["label"] for result in one] == [digit_name(d) for d in DIGITS]
    for first, second in zip(one, two):
        for a, b in zip(first, second):
            assert b["explanation"].curve_probabilities == pytest.approx(a["explanation"].curve_probabilities, abs=1e-5)
