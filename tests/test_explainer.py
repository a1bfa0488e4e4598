"""The Explainer's inputs and outputs: images of any mode, clear errors, Explanation JSON and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from moxi_hf import Explainer, Explanation, MoXIError, TokenRemoval


@pytest.fixture(scope="module")
def explainer(vit_dir):
    return Explainer.from_pretrained(vit_dir)


def test_any_image_mode_is_converted(explainer, tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    paths = []
    for mode in ("RGB", "RGBA", "L", "P", "CMYK", "I;16"):
        path = tmp_path / f"image_{mode.replace(';', '')}.{'tiff' if mode == 'CMYK' else 'png'}"
        rgb.convert(mode).save(path)
        paths.append(path)
    explanations = explainer.explain_batch(paths, method="self-shapley")
    assert [e.image for e in explanations] == [str(p) for p in paths]
    assert all(sorted(e.order) == list(range(16)) for e in explanations)
    # Arrays too: (H, W) grayscale, float in [0, 1].
    assert explainer.explain(rng.random((20, 20)), method="gradcam").patches_needed >= 1


def test_unreadable_and_missing_images_are_clear_errors(explainer, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(MoXIError, match="cannot read image"):
        explainer.explain(corrupt)
    with pytest.raises(MoXIError, match="does not exist"):
        explainer.explain(tmp_path / "missing.png")
    with pytest.raises(MoXIError, match="cannot use a dict"):
        explainer.explain({"not": "an image"})
    with pytest.raises(MoXIError, match="values in"):
        explainer.explain(np.full((8, 8), 3.5))


def test_bad_options_are_clear_errors(explainer, vit_dir, pixel_values):
    with pytest.raises(MoXIError, match="unknown method 'mixo'"):
        explainer.explain(pixel_values[0], method="mixo")
    with pytest.raises(MoXIError, match="unknown curve"):
        explainer.explain(pixel_values[0], curve="insert")
    with pytest.raises(MoXIError, match="unknown reward"):
        Explainer.from_pretrained(vit_dir, reward="odds")
    with pytest.raises(MoXIError, match="out of range"):
        explainer.explain(pixel_values[0], label=5)
    with pytest.raises(MoXIError, match="out of range"):
        explainer.explain(pixel_values[0], label=-1)
    with pytest.raises(MoXIError, match="does not divide"):
        Explainer.from_pretrained(vit_dir, players_grid=3)
    with pytest.raises(MoXIError, match="bad option for method"):
        explainer.explain(pixel_values[0], method="self-shapley", num_samples=3)
    with pytest.raises(MoXIError, match="unknown dtype"):
        Explainer.from_pretrained(vit_dir, dtype="float16x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for a missing GPU needs a machine without one")
def test_cuda_without_a_gpu_is_a_clear_error(vit_dir):
    with pytest.raises(MoXIError, match="no CUDA"):
        Explainer.from_pretrained(vit_dir, device="cuda")


def test_an_explicit_label_is_explained(explainer, pixel_values):
    predicted = int(explainer.predict(pixel_values[:1])[0])
    other = (predicted + 1) % 5
    explanation = explainer.explain(pixel_values[0], label=other)
    assert explanation.label == other and explanation.predicted == predicted


def test_stock_model_is_rebuilt_for_token_removal(vit_dir, explainer, pixel_values):
    stock = ViTForImageClassification.from_pretrained(vit_dir)
    from_model = Explainer(stock, ViTImageProcessorPil.from_pretrained(vit_dir))
    assert isinstance(from_model.adapter, TokenRemoval)
    assert from_model.explain(pixel_values[2]).order == explainer.explain(pixel_values[2]).order


def test_explanation_json_round_trip_and_plot(explainer, tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    explanation = explainer.explain(image, method="moxi", curve="deletion")
    data = json.loads(explanation.to_json())
    for key in ("method", "curve", "label", "order", "scores", "heatmap", "patches_needed", "grid", "model"):
        assert key in data
    again = Explanation.from_json(explanation.to_json(tmp_path / "e.json"))
    assert again == explanation
    assert Explanation.from_json(tmp_path / "e.json") == explanation
    figure_path = tmp_path / "heatmap.png"
    explanation.plot(figure_path)
    with Image.open(figure_path) as png:
        assert png.format == "PNG" and png.size[0] > 100


def _made(curve: str, needed: int, predictions: list[int], label: int = 3, predicted: int = 3, grid=(2, 2),
          patch_grid=None, label_name=None) -> Explanation:
    return Explanation(method="moxi", curve=curve, label=label, order=list(range(grid[0] * grid[1])),
                       heatmap=[[0.0] * grid[1]] * grid[0], patches_needed=needed, grid=grid, patch_grid=patch_grid,
                       curve_predictions=predictions, predicted=predicted, label_name=label_name,
                       predicted_name="eight" if predicted == 8 else None)


@pytest.mark.parametrize("explanation, sentence", [
    (_made("insertion", 1, [0, 3, 3, 3, 3]), "1 of 4 patches needed to predict 3"),
    (_made("insertion", 2, [0, 0, 3, 3, 3], grid=(2, 2), patch_grid=(4, 4)),
     "2 of 4 players (2x2 patches each) needed to predict 3"),
    (_made("insertion", 4, [0] * 5), "3 is never predicted, not even with all 4 patches"),
    (_made("insertion", 1, [3, 3], grid=(1, 1)), "1 of 1 patch needed to predict 3"),
    (_made("deletion", 2, [3, 3, 0, 0, 0]), "2 of 4 patches removed to change the prediction from 3"),
    (_made("deletion", 4, [3] * 5, label_name="cat"),
     'the prediction stays 3 ("cat") even with all 4 patches removed'),
    (_made("deletion", 1, [8, 8, 8, 8, 8], predicted=8),
     '3 is not predicted to begin with (the model predicts 8 ("eight")), so no patch needs removing'),
])
def test_the_patches_needed_sentence(explanation, sentence):
    assert explanation.needed_text == sentence


def test_label_text_comes_from_the_explainers_label_names(explainer, pixel_values):
    explanation = explainer.explain(pixel_values[0], "gradcam", label=2)
    assert explainer.label_name(2) == "LABEL_2" and explainer.label_text(2) == '2 ("LABEL_2")'
    assert explanation.label_text == '2 ("LABEL_2")'
    assert explanation.predicted_text == explainer.label_text(explanation.predicted)
    assert explainer.label_names() == [f"LABEL_{index}" for index in range(5)]
