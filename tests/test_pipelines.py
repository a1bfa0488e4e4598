"""transformers pipelines: Explainer.from_pipeline, and the "image-explanation" task of pipeline()."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import KeyDataset

import moxi_hf.pipelines  # registers the task
from helpers import TINY, save_checkpoint, serve_folder, tiny_model
from moxi_hf import Explainer, MoXIError
from moxi_hf.modeling import MoXIViTForImageClassification

REPO = Path(__file__).resolve().parents[1]
MNIST = str(REPO / "models" / "moxi-vit-mnist")
DIGITS = sorted((REPO / "models" / "moxi-vit-mnist" / "samples").glob("*.png"))


def pictures(count: int = 3, size: int = 16) -> list[Image.Image]:
    generator = np.random.default_rng(7)
    return [Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def whole_image_probability(explanation) -> float:
    """p(label) with every player present: the last point of an insertion curve."""
    assert explanation.curve == "insertion" and len(explanation.order) == len(explanation.curve_probabilities) - 1
    return explanation.curve_probabilities[-1]


def checkpoint(tmp_path_factory, name: str, **config) -> str:
    return save_checkpoint(tiny_model(**config), tmp_path_factory.mktemp(name))


@pytest.fixture(scope="module")
def multi_label_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "multi", problem_type="multi_label_classification", seed=5)


@pytest.fixture(scope="module")
def explain_digits():
    return pipeline("image-explanation", model=MNIST, device="cpu")


@pytest.fixture(scope="module")
def digit_orders():
    explainer = Explainer.from_pretrained(MNIST)
    return [explainer.explain(str(digit)).order for digit in DIGITS]


# -- Explainer.from_pipeline ----------------------------------------------------------------------


@pytest.mark.parametrize("model_dir", ["vit_dir", "resnet_dir"])
def test_from_pipeline_shares_the_weights_and_leaves_the_pipeline_unchanged(model_dir, request):
    pipe = pipeline("image-classification", model=request.getfixturevalue(model_dir), device="cpu")
    size = pipe.image_processor.size["height"]
    images = pictures(size=size)
    model_class, config = type(pipe.model), pipe.model.config.to_dict()
    before = pipe(images, top_k=pipe.model.config.num_labels)

    explainer = Explainer.from_pipeline(pipe)
    shared = {parameter.data_ptr() for parameter in explainer.model.parameters()}
    assert shared == {parameter.data_ptr() for parameter in pipe.model.parameters()}
    if model_dir == "vit_dir":
        assert isinstance(explainer.model, MoXIViTForImageClassification) and explainer.model is not pipe.model
    batch = explainer.explain_methods(images, explainer.applicable_methods(), ["insertion"],
                                      options={"full-shapley": {"num_samples": 4}})

    assert type(pipe.model) is model_class and pipe.model.config.to_dict() == config and not pipe.model.training
    assert all(not module._forward_hooks for module in pipe.model.modules())
    assert pipe(images, top_k=pipe.model.config.num_labels) == before
    for image, scores in enumerate(before):
        explanation = batch[("moxi", "insertion")][image]
        assert explainer.label_name(explanation.label) == scores[0]["label"]
        assert whole_image_probability(explanation) == pytest.approx(scores[0]["score"], abs=1e-5)


def test_a_multi_label_pipeline_is_explained_with_its_sigmoid(multi_label_dir):
    pipe = pipeline("image-classification", model=multi_label_dir, device="cpu")
    explainer = Explainer.from_pipeline(pipe)
    assert (explainer.adapter.link, explainer.adapter.decision) == ("sigmoid", "threshold")
    for image in pictures():
        top = pipe(image, top_k=1)[0]
        explanation = explainer.explain(image)
        assert explainer.label_name(explanation.label) == top["label"]
        assert whole_image_probability(explanation) == pytest.approx(top["score"], abs=1e-5)
        # under a sigmoid, log-odds is the label's own logit
        logits = explainer.adapter.full_logits(explainer.preprocess([image])[0])[0]
        full = explainer.value_function(explainer.preprocess([image])[0], [explanation.label])(
            torch.ones(1, explainer.players.n_players, dtype=torch.bool))
        assert float(full[0]) == pytest.approx(float(logits[explanation.label]), abs=1e-5)


@pytest.mark.parametrize(("model_dir", "function", "rule"), [
    ("vit_dir", "sigmoid", ("sigmoid", "threshold")),
    ("multi_label_dir", "softmax", ("softmax", "argmax")),
])
def test_an_explicit_function_to_apply_is_followed(model_dir, function, rule, request):
    pipe = pipeline("image-classification", model=request.getfixturevalue(model_dir), device="cpu",
                    function_to_apply=function)
    explainer = Explainer.from_pipeline(pipe)
    assert (explainer.adapter.link, explainer.adapter.decision) == rule
    image = pictures(1)[0]
    top = pipe(image, top_k=1)[0]
    assert whole_image_probability(explainer.explain(image, method="self-shapley")) == pytest.approx(top["score"], abs=1e-5)


def test_raw_logits_and_regression_checkpoints_are_refused(vit_dir, tmp_path):
    pipe = pipeline("image-classification", model=vit_dir, device="cpu", function_to_apply="none")
    with pytest.raises(MoXIError, match=r"^function_to_apply='none' gives raw logits, not probabilities.*'softmax'"):
        Explainer.from_pipeline(pipe)
    regression = save_checkpoint(tiny_model(problem_type="regression"), tmp_path / "regression")
    with pytest.raises(MoXIError, match="regression model"):
        Explainer.from_pipeline(pipeline("image-classification", model=regression, device="cpu"))


def test_a_float16_pipeline_is_refused_with_the_fix(tmp_path):
    half = save_checkpoint(tiny_model().half(), tmp_path / "half")
    pipe = pipeline("image-classification", model=half, device="cpu")
    assert pipe.dtype == torch.float16  # dtype="auto": the checkpoint's own
    with pytest.raises(MoXIError, match=r"runs in float16.*dtype=torch\.float32") as refused:
        Explainer.from_pipeline(pipe)
    assert "\n" not in str(refused.value)
    explainer = Explainer.from_pipeline(pipeline("image-classification", model=half, device="cpu", dtype=torch.float32))
    assert explainer.adapter.dtype == torch.float32
    # the explanation task picks a dtype moxi explains in: float32 for a float16 checkpoint
    explain = pipeline("image-explanation", model=half, device="cpu")
    assert explain.dtype == torch.float32 and explain(pictures(1)[0], method="self-shapley")[0]["patches_needed"] >= 0
    assert pipeline("image-explanation", model=half, device="cpu", dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(MoXIError, match="dtype must be float32 or bfloat16, got torch.float16"):
        pipeline("image-explanation", model=half, device="cpu", dtype=torch.float16)


def test_pipelines_of_other_tasks_are_refused(vit_dir):
    from transformers import BertConfig, BertForSequenceClassification, TextClassificationPipeline

    features = pipeline("image-feature-extraction", model=vit_dir, device="cpu")
    text = TextClassificationPipeline(model=BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)), device="cpu")
    for pipe in (features, text):
        with pytest.raises(MoXIError, match=r"^Explainer.from_pipeline takes an image-classification .*pipeline, got"):
            Explainer.from_pipeline(pipe)


# -- pipeline("image-explanation") ------------------------------------------------------------------


def test_the_task_is_registered_once_and_quietly(capfd):
    moxi_hf.pipelines.register()
    moxi_hf.pipelines.register()
    entry = PIPELINE_REGISTRY.supported_tasks["image-explanation"]
    assert entry["impl"] is moxi_hf.pipelines.ImageExplanationPipeline
    assert entry["pt"] == (moxi_hf.pipelines.ExplainableModelLoader,)
    assert capfd.readouterr() == ("", "")


@pytest.mark.slow
def test_importing_the_pipelines_twice_says_nothing():
    script = ("import importlib, moxi_hf, sys; assert 'transformers.pipelines' not in sys.modules; "
              "import moxi_hf.pipelines as p; importlib.reload(p); "
              "from transformers.pipelines import PIPELINE_REGISTRY as r; "
              "print(r.supported_tasks['image-explanation']['impl'] is p.ImageExplanationPipeline)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


def test_the_digits_explained_as_a_pipeline_are_the_explainers(explain_digits, digit_orders):
    assert type(explain_digits.model) is MoXIViTForImageClassification  # loaded by moxi's loader
    results = explain_digits([str(digit) for digit in DIGITS])
    assert [result[0]["order"] for result in results] == digit_orders
    for digit, result in zip(DIGITS, results):
        (entry,) = result
        assert entry["label"] == digit.stem.split("_")[1] and entry["explanation"].image == str(digit)
        assert entry["explanation"].order == entry["order"]
        assert entry["patches_needed"] == entry["explanation"].patches_needed
        assert whole_image_probability(entry["explanation"]) == pytest.approx(entry["score"], abs=1e-5)


def test_a_key_dataset_gives_the_same_results_for_every_batch_size(explain_digits, digit_orders, tmp_path):
    import datasets

    for digit in DIGITS:
        folder = tmp_path / "digits" / "train" / digit.stem.split("_")[1]
        folder.mkdir(parents=True)
        shutil.copy(digit, folder / digit.name)
    split = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "digits"), split="train",
                                  cache_dir=str(tmp_path / "cache"))
    one = list(explain_digits(KeyDataset(split, "image"), batch_size=1))
    two = list(explain_digits(KeyDataset(split, "image"), batch_size=2))
    assert [result[0]["order"] for result in one] == digit_orders
    key = [[(entry["label"], entry["score"], entry["order"], entry["patches_needed"]) for entry in result]
           for result in one]
    assert [[(entry["label"], entry["score"], entry["order"], entry["patches_needed"]) for entry in result]
            for result in two] == key
    for first, second in zip(one, two):
        assert second[0]["explanation"].curve_probabilities == pytest.approx(
            first[0]["explanation"].curve_probabilities, abs=1e-5)


def test_every_kind_of_input_is_read_by_moxis_loader(explain_digits, tmp_path, monkeypatch):
    digit = DIGITS[1]
    picture = Image.open(digit).convert("RGB")
    array = np.array(picture)
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(digit, served / "digit.png")
    with serve_folder(served) as base:
        url = f"{base}/digit.png?token=abc"
        inputs = [str(digit), url, picture, array, torch.from_numpy(array).permute(2, 0, 1).float() / 255]
        single = [explain_digits(item, method="self-shapley")[0] for item in inputs]
        listed = explain_digits(inputs, method="self-shapley")
        generated = list(explain_digits((item for item in inputs), method="self-shapley"))
        monkeypatch.setenv("MOXI_URL_MAX_BYTES", "100")  # the loader's size cap holds for the pipeline too
        with pytest.raises(MoXIError, match=r"larger than the limit of 100 bytes"):
            explain_digits(url)
    for results in (single, [result[0] for result in listed], [result[0] for result in generated]):
        assert [result["order"] for result in results] == [single[0]["order"]] * len(inputs)
    assert [result["explanation"].image for result in single] == [str(digit), f"{base}/digit.png", None, None, None]


def test_top_k_label_and_the_methods_options(vit_dir):
    classify = pipeline("image-classification", model=vit_dir, device="cpu")
    explain = pipeline("image-explanation", model=vit_dir, device="cpu", method="self-shapley")
    image = pictures(1)[0]
    ranked = classify(image, top_k=5)
    found = explain(image, top_k=50)  # clamped to the 5 labels, as transformers does
    assert [entry["label"] for entry in found] == [entry["label"] for entry in ranked]
    assert [entry["score"] for entry in found] == pytest.approx([entry["score"] for entry in ranked], abs=1e-6)
    assert {entry["explanation"].method for entry in found} == {"self-shapley"}
    assert [entry["label"] for entry in explain(image)] == [ranked[0]["label"]]
    by_name = explain(image, label=ranked[2]["label"], method="full-shapley", num_samples=3)
    by_index = explain(image, label=found[2]["explanation"].label, method="full-shapley", num_samples=3)
    assert by_name[0]["order"] == by_index[0]["order"] and by_name[0]["explanation"].options["num_samples"] == 3
    assert explain(image, interactions=True, interaction_top=4)[0]["explanation"].interactions["players"]


def test_the_heatmap_covers_the_picture_the_model_saw(explain_digits):
    (entry,) = explain_digits(str(DIGITS[1]))
    heat, view = np.asarray(entry["heatmap"]), entry["explanation"].display_image
    assert entry["heatmap"].mode == "L" and entry["heatmap"].size == view.size == (28, 28)
    rows, cols = entry["explanation"].grid
    cells = heat.reshape(rows, 28 // rows, cols, 28 // cols).max(axis=(1, 3)).ravel()
    assert cells[entry["order"][0]] == 255
    assert sorted(np.flatnonzero(cells)) == sorted(entry["order"][: entry["patches_needed"]])


@pytest.mark.parametrize(("call", "message"), [
    (dict(label="7", top_k=2), "give label .* or top_k"),
    (dict(label="tabby"), r"unknown label 'tabby': the model's classes are '0', '1'"),
    (dict(top_k=0), "top_k must be a whole number >= 1"),
    (dict(masking="pixel"), r"masking shapes the explainer: give it when the pipeline is built"),
    (dict(colour="red"), r"unknown option 'colour' of the image-explanation pipeline"),
    (dict(curve="sideways"), "unknown curve 'sideways'"),
    (dict(candidate_labels=["a cat", "a dog"]), "candidate_labels and hypothesis_template are for zero-shot models"),
    (dict(method="moxi", num_samples=3), "bad option for method 'moxi'"),
])
def test_bad_options_are_one_line(explain_digits, call, message):
    with pytest.raises(MoXIError, match=message) as refused:
        explain_digits(str(DIGITS[0]), **call)
    assert "\n" not in str(refused.value)


def test_the_model_is_loaded_by_moxis_loader_and_its_refusals_hold(vit_dir, tmp_path):
    explain = pipeline("image-explanation", model=vit_dir, device="cpu", masking="pixel", players_grid=2)
    assert explain.explainer.adapter.masking == "pixel" and explain.explainer.players.grid == (2, 2)
    with pytest.raises(MoXIError, match=r"^device_map is not supported: .* pass device= instead"):
        pipeline("image-explanation", model=vit_dir, device_map="cpu")
    # a checkpoint whose architecture transformers knows loads without running its code
    folder = Path(shutil.copytree(vit_dir, tmp_path / "with-code"))
    (folder / "custom.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    config = (folder / "config.json").read_text().replace('"model_type"', '"auto_map": {"AutoConfig": '
                                                          '"custom.X"}, "model_type"', 1)
    (folder / "config.json").write_text(config)
    assert pipeline("image-explanation", model=str(folder), device="cpu")(pictures(1)[0], method="self-shapley")
    assert not (tmp_path / "ran").exists()


def test_a_model_object_needs_its_processor(vit_dir):
    from transformers import AutoImageProcessor

    model = ViTForImageClassification(ViTConfig(**TINY)).eval()
    with pytest.raises(MoXIError, match="needs the model's image processor"):
        pipeline("image-explanation", model=model, device="cpu")
    explain = pipeline("image-explanation", model=model, image_processor=AutoImageProcessor.from_pretrained(vit_dir),
                       device="cpu")
    assert type(explain.model) is ViTForImageClassification  # the object given, shared with the explainer
    assert explain.explainer.model.vit.embeddings.patch_embeddings.projection.weight.data_ptr() == \
        model.vit.embeddings.patch_embeddings.projection.weight.data_ptr()
    assert explain(pictures(1)[0], method="self-shapley")[0]["label"] in model.config.id2label.values()


def test_without_a_model_the_task_explains_with_the_embedded_default(digit_orders):
    explain = pipeline("image-explanation", device="cpu")
    assert explain(str(DIGITS[0]))[0]["order"] == digit_orders[0]
