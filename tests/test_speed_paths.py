"""The fast engine agrees with the original evaluation pattern (benchmarks/naive.py): same orders in fp32, same values.

No timing here (scripts/benchmark.py measures speed); only agreement between the paths.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import DeiTConfig, ViTConfig

from benchmarks.naive import NaiveMoXI
from helpers import TINY, save_image_text_checkpoint, tiny_model
from moxi_hf import Explainer, TokenRemoval, ValueFunction, get_method
from moxi_hf.engine import FastEncoder, fast_encoder
from moxi_hf.metrics.curves import curve_coalitions
from moxi_hf.modeling import (
    MoXIDeiTForImageClassification,
    MoXIDeiTForImageClassificationWithTeacher,
    MoXIViTForImageClassification,
)
from moxi_hf.value import _even_chunk


def small_model(cls=MoXIViTForImageClassification, config_cls=ViTConfig, seed: int = 0, **overrides):
    """A tiny random MoXI classifier whose head is scaled so that values are well separated."""
    model = tiny_model(cls, config_cls, seed, **{"initializer_range": 0.2, **overrides})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "classifier" in name and name.endswith("weight"):
                parameter.mul_(5)
    return model


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(7)
    return torch.randn(2, 3, 16, 16)


def predicted(model, images):
    return TokenRemoval(model).full_logits(images).argmax(dim=1)


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_moxi_orders_equal_naive(model, images, curve):
    labels = predicted(model, images)
    # Small chunks: several forward passes per step, rows of both images mixed in one pass.
    game = ValueFunction(TokenRemoval(model), images, labels, max_tokens=40)
    fast = get_method("moxi").attribute(game, curve)
    naive = NaiveMoXI(model).moxi(images, labels, curve)
    assert torch.equal(fast.order, naive.order)
    # Same value after every step: v(S_t) of the fast path's curve vs the naive step values.
    values = torch.stack([game(curve_coalitions(order, curve)[1:], torch.full((16,), index))
                          for index, order in enumerate(fast.order)])
    torch.testing.assert_close(values, naive.values, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_self_shapley_orders_equal_naive(model, images, curve):
    labels = predicted(model, images)
    game = ValueFunction(TokenRemoval(model), images, labels)
    fast = get_method("self-shapley").attribute(game, curve)
    naive = NaiveMoXI(model).self_shapley(images, labels, curve)
    assert torch.equal(fast.order, naive.order)
    base = game(torch.full((1, 16), curve == "deletion"), torch.tensor([0]))
    singles = fast.scores[0] + base if curve == "insertion" else base - fast.scores[0]
    torch.testing.assert_close(singles, naive.values[0], atol=1e-5, rtol=1e-5)


def test_naive_evaluates_every_candidate_at_every_step(model, images):
    """The baseline does the original's work: N rows per step, chosen candidates included."""
    labels = predicted(model, images[:1])
    naive = NaiveMoXI(model)
    insertion = naive.moxi(images[:1], labels, "insertion").sequences
    assert insertion == {step + 2: 16 for step in range(16)}  # CLS + S + [i], a chosen i twice
    deletion = naive.moxi(images[:1], labels, "deletion").sequences
    expected = {}
    for step in range(16):  # R minus {i}: 16 - step rows one token shorter than the step chosen ones
        expected[16 - step] = expected.get(16 - step, 0) + 16 - step
        if step:
            expected[17 - step] = expected.get(17 - step, 0) + step
    assert deletion == expected


@pytest.mark.parametrize("cls,config_cls", [
    (MoXIViTForImageClassification, ViTConfig),
    (MoXIDeiTForImageClassification, DeiTConfig),
    (MoXIDeiTForImageClassificationWithTeacher, DeiTConfig),
])
def test_fast_encoder_equals_model_forward(cls, config_cls):
    """Fused encoder (QKV in one product, fused GELU/residual, special-token-only last layer) = the model's forward."""
    model = small_model(cls, config_cls, seed=3, num_hidden_layers=3)
    torch.manual_seed(0)
    pixel_values = torch.randn(3, 3, 16, 16)
    keep = torch.rand(3, 16) < 0.5
    keep[:, :7] = True
    keep[:, 7:] = False
    keep = keep[:, torch.randperm(16)]
    reference = model(pixel_values=pixel_values, embedding_mask=keep).logits
    adapter = TokenRemoval(model)
    prepared = adapter.prepare(pixel_values)
    assert prepared.encoder is not None
    fast = adapter.logits(prepared, torch.arange(3), keep)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    for fused in (True, False):
        for matmul_up_to in (0, 1000):  # SDPA, or matmul-softmax-matmul attention
            encoder = FastEncoder.build(model)  # a private one: the cached engine is shared
            encoder.fused = fused
            encoder.matmul_attention_max_length = matmul_up_to
            logits = adapter.logits(dataclasses.replace(prepared, encoder=encoder), torch.arange(3), keep)
            torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    adapter.fast = False
    slow = adapter.prepare(pixel_values)
    assert slow.encoder is None
    torch.testing.assert_close(adapter.logits(slow, torch.arange(3), keep), reference, atol=1e-5, rtol=1e-5)


def test_fast_encoder_bf16_close_to_fp32(model, images):
    keep = torch.zeros(4, 16, dtype=torch.bool)
    keep[:, ::2] = True
    reference = TokenRemoval(model).logits(TokenRemoval(model).prepare(images), torch.tensor([0, 1, 0, 1]), keep)
    half = small_model().to(torch.bfloat16)
    adapter = TokenRemoval(half)
    prepared = adapter.prepare(images)
    assert prepared.encoder is not None and prepared.encoder.fused
    logits = adapter.logits(prepared, torch.tensor([0, 1, 0, 1]), keep)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, reference, atol=0.1, rtol=0.05)


def test_fast_encoder_falls_back_in_training_mode(images):
    model = small_model().train()
    assert FastEncoder.build(model) is None
    model.eval()
    assert FastEncoder.build(model) is not None


def test_chunking_and_memory_budget_do_not_change_values(model, images):
    labels = predicted(model, images)
    torch.manual_seed(1)
    coalitions = torch.rand(37, 16) < 0.4
    owner = torch.randint(0, 2, (37,))
    whole = ValueFunction(TokenRemoval(model), images, labels, max_tokens=10**6, memory_mb=10**4)
    tight = ValueFunction(TokenRemoval(model), images, labels, memory_mb=0.01)
    assert tight.chunk_cost < 20 < whole.chunk_cost
    torch.testing.assert_close(tight(coalitions, owner), whole(coalitions, owner), atol=1e-5, rtol=1e-5)


def test_even_chunks():
    assert _even_chunk(130, 128) == 65
    assert _even_chunk(128, 128) == 128
    assert _even_chunk(5, 2) == 2
    assert _even_chunk(3, 100) == 3


def test_fast_encoder_is_built_once_and_rebuilt_when_weights_change(images):
    model = small_model()
    first = fast_encoder(model)
    assert first is not None and fast_encoder(model) is first
    assert TokenRemoval(model).prepare(images).encoder is first  # shared by every adapter/value function
    keep = torch.ones(1, 16, dtype=torch.bool)
    before = TokenRemoval(model).logits(TokenRemoval(model).prepare(images[:1]), torch.tensor([0]), keep)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # in place: same storage, new version
    rebuilt = fast_encoder(model)
    assert rebuilt is not first
    after = TokenRemoval(model).logits(TokenRemoval(model).prepare(images[:1]), torch.tensor([0]), keep)
    torch.testing.assert_close(after, before + 1.0, atol=1e-5, rtol=1e-5)
    model.to(torch.bfloat16)
    assert fast_encoder(model) is not rebuilt


def _tiny_token_model(arch: str):
    from transformers import (
        BeitConfig,
        Data2VecVisionConfig,
        Dinov2WithRegistersConfig,
        IJepaConfig,
        ViTMSNConfig,
    )

    from moxi_hf.modeling import (
        MoXIBeitForImageClassification,
        MoXIData2VecVisionForImageClassification,
        MoXIDinov2WithRegistersForImageClassification,
        MoXIIJepaForImageClassification,
        MoXIViTMSNForImageClassification,
    )

    base = {key: value for key, value in TINY.items() if key != "intermediate_size"}
    return {
        "vit_msn": (MoXIViTMSNForImageClassification, ViTMSNConfig, {"intermediate_size": 64}),
        "dinov2_with_registers": (MoXIDinov2WithRegistersForImageClassification, Dinov2WithRegistersConfig,
                                  {"mlp_ratio": 2, "num_register_tokens": 2}),
        "beit": (MoXIBeitForImageClassification, BeitConfig,
                 {"intermediate_size": 64, "use_relative_position_bias": True, "use_mean_pooling": True}),
        "data2vec": (MoXIData2VecVisionForImageClassification, Data2VecVisionConfig,
                     {"intermediate_size": 64, "use_relative_position_bias": True, "use_mean_pooling": True}),
        "ijepa": (MoXIIJepaForImageClassification, IJepaConfig, {"intermediate_size": 64}),
    }[arch], base


@pytest.mark.parametrize("arch", ["vit_msn", "dinov2_with_registers", "beit", "data2vec", "ijepa"])
def test_other_architectures_orders_equal_naive(arch, images):
    (cls, config_cls, extra), base = _tiny_token_model(arch)
    torch.manual_seed(0)
    model = cls(config_cls(**base, **extra, initializer_range=0.2)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(5)
    # ViT-MSN has ViT's layers: the fused engine covers it; the others fall back to the model's own layers.
    assert (fast_encoder(model) is not None) == (arch == "vit_msn")
    labels = predicted(model, images[:1])
    for method in ("moxi", "self-shapley"):
        fast = get_method(method).attribute(ValueFunction(TokenRemoval(model), images[:1], labels), "insertion")
        naive = getattr(NaiveMoXI(model), method.replace("-", "_"))(images[:1], labels, "insertion")
        assert torch.equal(fast.order, naive.order)


@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_zero_shot_orders_equal_naive(family, curve, images, tmp_path):
    """The zero-shot game: the text features computed once, each coalition through the vision tower only."""
    explainer = Explainer.from_pretrained(save_image_text_checkpoint(family, tmp_path),
                                          candidate_labels=["a cat", "a dog", "a bird"])
    with torch.no_grad():  # a sharper game: values well apart, as for the classifiers above
        explainer.model.logit_scale.fill_(4.6)
    adapter = explainer.adapter
    labels = adapter.full_logits(images).argmax(dim=1)
    game = ValueFunction(adapter, images, labels)
    naive = NaiveMoXI(explainer.model, text_features=adapter.text.features)
    for method in ("moxi", "self-shapley"):
        expected = getattr(naive, method.replace("-", "_"))(images, labels, curve).order
        assert torch.equal(get_method(method).attribute(game, curve).order, expected), (family, method)
