"""The web demo on a zero-shot model (the shipped moxi-clip-mnist): the candidate labels typed on the page.

The page itself, in a browser: test_demo_browser.py.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moxi_hf import Explainer, MoXIError
from moxi_hf.demo import DemoModel, load_demo_model
from moxi_hf.demo.core import candidate_labels_from_text, templates_from_text

ROOT = Path(__file__).resolve().parents[1]
CLIP_MNIST = ROOT / "models" / "moxi-clip-mnist"
TEMPLATE = "a photo of the digit {}."
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def clip():
    return load_demo_model(str(CLIP_MNIST))


@pytest.fixture(scope="module")
def three():
    return Image.open(CLIP_MNIST / "samples" / "digit_3_1502.png").convert("RGB")


def _same(a, b) -> None:
    assert a.order == b.order and a.heatmap == b.heatmap
    assert a.patches_needed == b.patches_needed
    assert a.label == b.label and a.predicted == b.predicted
    assert a.label_name == b.label_name and a.predicted_name == b.predicted_name
    assert np.allclose(a.curve_probabilities, b.curve_probabilities, atol=1e-6)


def test_the_boxes_read_as_typed():
    assert candidate_labels_from_text(" a cat,a dog ,  a bird") == ["a cat", "a dog", "a bird"]
    assert candidate_labels_from_text("   ") == []  # no label at all (the library refuses it)
    assert candidate_labels_from_text("a, ,b") == ["a", "", "b"]  # an empty label is kept for the library to refuse
    assert candidate_labels_from_text(None) is None and candidate_labels_from_text(("x", "y")) == ["x", "y"]
    assert templates_from_text(" a photo of {}. ") == "a photo of {}."
    assert templates_from_text("a photo of {}.\n\n the number {}.\n") == ["a photo of {}.", "the number {}."]
    assert templates_from_text("  ") == "" and templates_from_text(None) is None


def test_the_model_s_own_labels_without_boxes(clip, three):
    assert clip.explainer.zero_shot and clip.explainer.candidate_labels == DIGITS
    result = clip.explain(three, "self-shapley")
    _same(result.explanation, Explainer.from_pretrained(CLIP_MNIST).explain(three, "self-shapley"))
    assert result.explanation.label_name in DIGITS


@pytest.mark.parametrize("method", ["moxi", "gradcam"])
def test_typed_labels_are_the_classes_explained(clip, three, method):
    result = clip.explain(three, method, "deletion", label=1, candidate_labels="three, eight, one",
                          hypothesis_template=TEMPLATE)
    expected = Explainer.from_pretrained(CLIP_MNIST).explain(three, method, "deletion", label=1,
                                                             candidate_labels=["three", "eight", "one"],
                                                             hypothesis_template=TEMPLATE)
    _same(result.explanation, expected)
    assert result.explanation.label_name == "eight"  # label 1 of the typed labels
    assert '1 ("eight")' in result.needed_text
    assert json.loads(Path(result.json_path).read_text())["label_name"] == "eight"
    assert clip.explainer.candidate_labels == DIGITS  # the shared explainer keeps its own labels


def test_a_typed_template_and_reward_and_grid(clip, three):
    result = clip.explain(three, "self-shapley", reward="logit", players_grid=7,
                          candidate_labels="three", hypothesis_template="the number {}.")
    expected = Explainer.from_pretrained(CLIP_MNIST, reward="logit", players_grid=7).explain(
        three, "self-shapley", candidate_labels=["three"], hypothesis_template="the number {}.")
    _same(result.explanation, expected)
    assert result.explanation.label_name == "three"


def _library_refusal(labels, template) -> str:
    """What the library itself says about these labels (its one line)."""
    with pytest.raises(MoXIError) as caught:
        Explainer.from_pretrained(CLIP_MNIST).explain_methods(
            [Image.new("RGB", (28, 28))], candidate_labels=labels, hypothesis_template=template)
    return str(caught.value)


@pytest.mark.parametrize("labels_text, template_text, labels, template, words", [
    ("", TEMPLATE, [], TEMPLATE, "needs candidate labels"),
    ("three", TEMPLATE, ["three"], TEMPLATE, "one candidate label alone"),
    ("three, eight, three", TEMPLATE, ["three", "eight", "three"], TEMPLATE, "distinct"),
    ("three,, eight", TEMPLATE, ["three", "", "eight"], TEMPLATE, "non-empty"),
    ("three, eight", "a photo", ["three", "eight"], "a photo", "exactly once"),
    ("three, eight", "", ["three", "eight"], "", "exactly once"),
])
def test_bad_labels_are_the_library_s_line_on_the_page(clip, three, labels_text, template_text, labels, template,
                                                       words):
    pytest.importorskip("gradio")
    from moxi_hf.demo.app import PageHandlers, error_html

    message = _library_refusal(labels, template)
    assert words in message and "\n" not in message
    handlers = PageHandlers(clip)
    needed, *pictures = handlers.explain(three, "moxi", "insertion", "prediction", "log-odds", "patch",
                                         candidate_labels=labels_text, hypothesis_template=template_text)
    assert needed == error_html(MoXIError(message))  # in place of the results: no picture, no file
    assert pictures[0] is None and pictures[1] is None and pictures[2]["value"] is None and pictures[3] is None
    status, heatmaps, curves = handlers.compare(three, "insertion", "prediction", "log-odds", "patch",
                                                candidate_labels=labels_text, hypothesis_template=template_text)
    assert status == error_html(MoXIError(message)) and heatmaps is None and curves is None


def test_a_label_beyond_the_typed_ones_is_refused(clip, three):
    with pytest.raises(MoXIError, match="out of range"):
        clip.explain(three, "moxi", label=2, candidate_labels="three, eight")


def test_a_classifier_takes_no_candidate_labels(vit_dir):
    with pytest.raises(MoXIError, match="is a classifier with its own"):
        DemoModel(Explainer.from_pretrained(vit_dir)).explain(Image.new("RGB", (16, 16)), candidate_labels="a, b")


def test_page_handlers_with_typed_labels(clip, three):
    pytest.importorskip("gradio")
    from moxi_hf.demo.app import PageHandlers

    handlers = PageHandlers(clip)
    needed, heatmap, *_ = handlers.explain(three, "moxi", "insertion", "1", "log-odds", "patch",
                                           candidate_labels="eight, three", hypothesis_template=TEMPLATE)
    assert html.escape('1 ("three")') in needed and isinstance(heatmap, Image.Image)
    status, heatmaps, _ = handlers.compare(three, "insertion", "0", "log-odds", "patch", candidate_labels="eight, three",
                                           hypothesis_template=TEMPLATE)
    assert html.escape('on label 0 ("eight")') in status and len(heatmaps) == len(clip.methods)


def _components(demo) -> dict:
    return {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}


def test_the_page_has_the_boxes_prefilled_with_the_model_s_labels(clip, vit_dir):
    gr = pytest.importorskip("gradio")
    from moxi_hf.demo import build_demo
    from moxi_hf.demo.app import PREDICTION, intro_markdown, label_dropdown

    components = _components(build_demo(clip))
    assert components["candidate-labels"].value == ", ".join(DIGITS)
    assert components["hypothesis-template"].value == TEMPLATE
    assert ('3 ("three")', "3") in components["label"].choices
    assert "candidate labels" in intro_markdown(clip)
    classifier = _components(build_demo(Explainer.from_pretrained(vit_dir)))
    assert "candidate-labels" not in classifier and "hypothesis-template" not in classifier
    assert components["title"].value == "## MoXI: which patches does the zero-shot model need?"
    assert classifier["title"].value == "## MoXI: which patches does the classifier need?"
    # the label choices follow the labels typed; a choice still there stays, one gone falls back to the prediction
    update = label_dropdown(gr, candidate_labels_from_text("three, eight"), "1")
    assert update["choices"] == [("the prediction", PREDICTION), ('0 ("three")', "0"), ('1 ("eight")', "1")]
    assert update["value"] == "1"
    assert label_dropdown(gr, ["three", "eight"], "5")["value"] == PREDICTION


def test_a_zero_shot_model_that_records_no_labels_starts_with_an_empty_box(tmp_path, three):
    pytest.importorskip("gradio")
    import shutil

    from moxi_hf.demo import build_demo
    from moxi_hf.demo.app import PageHandlers
    from moxi_hf.zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE

    folder = tmp_path / "clip-without-labels"
    shutil.copytree(CLIP_MNIST, folder, ignore=shutil.ignore_patterns("samples"))
    config = json.loads((folder / "config.json").read_text())
    del config["moxi_candidate_labels"], config["moxi_hypothesis_template"]
    (folder / "config.json").write_text(json.dumps(config))
    demo_model = DemoModel(Explainer.from_pretrained(folder))
    components = _components(build_demo(demo_model))
    assert components["candidate-labels"].value == ""
    assert components["hypothesis-template"].value == DEFAULT_HYPOTHESIS_TEMPLATE
    handlers = PageHandlers(demo_model)
    needed, *_ = handlers.explain(three, "moxi", "insertion", "prediction", "log-odds", "patch",
                                  candidate_labels="", hypothesis_template=DEFAULT_HYPOTHESIS_TEMPLATE)
    assert "needs candidate labels" in needed
    result = demo_model.explain(three, "self-shapley", candidate_labels="three, eight",
                                hypothesis_template=DEFAULT_HYPOTHESIS_TEMPLATE)
    assert result.explanation.label_name in ("three", "eight")
