"""Token removal in CLIP and SigLIP (zero-shot models and classifiers): equivalence with the stock modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    CLIPForImageClassification,
    CLIPModel,
    SiglipForImageClassification,
    SiglipModel,
)

from helpers import tiny_image_text_config
from moxi_hf.modeling import TOKEN_CLASSES, mean_or_zeros

#: name -> (stock class, family, config overrides)
MODELS = {
    "clip": (CLIPModel, "clip", {}),
    "siglip": (SiglipModel, "siglip", {}),
    "clip_classifier": (CLIPForImageClassification, "clip", {"num_labels": 5}),
    "siglip_classifier": (SiglipForImageClassification, "siglip", {"num_labels": 5}),
}

KEEPS = [
    [[0, 5, 9, 15], [1, 2, 3, 4], [15, 14, 7, 0]],
    [[6], [0], [15]],  # a single kept patch
    [[3, 8, 12], [2, 10, 11], [0, 1, 13]],
]


def stock_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random stock model; every parameter jittered so zero-initialised biases matter too."""
    stock_class, family, overrides = MODELS[name]
    torch.manual_seed(seed)
    model = stock_class(tiny_image_text_config(family, **overrides)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def checkpoint(request, tmp_path_factory):
    name = request.param
    path = tmp_path_factory.mktemp(name)
    stock_model(name).save_pretrained(path)
    return name, str(path)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def zero_shot_checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    stock_model(request.param).save_pretrained(path)
    return request.param, str(path)


@pytest.fixture
def input_ids():
    torch.manual_seed(7)
    ids = torch.randint(0, 512, (2, 9))
    ids[:, -1] = 513  # EOS, where CLIP pools the text
    return ids


def load_pair(name: str, path: str, attn_implementation: str = "sdpa"):
    stock_class = MODELS[name][0]
    stock = stock_class.from_pretrained(path, attn_implementation="eager").eval()
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path, attn_implementation=attn_implementation).eval()
    return stock, ours


def keep_matrix(keep: list[list[int]]) -> torch.Tensor:
    kept = torch.zeros(len(keep), 16, dtype=torch.bool)
    for row, patches in enumerate(keep):
        kept[row, patches] = True
    return kept


def masked_encoder(vision_model, hidden_states: torch.Tensor, kept_tokens: torch.Tensor) -> torch.Tensor:
    """The stock encoder (eager attention) with the removed tokens masked out of attention as keys."""
    additive = torch.zeros(kept_tokens.shape, dtype=hidden_states.dtype)
    additive[~kept_tokens] = float("-inf")
    return vision_model.encoder(inputs_embeds=hidden_states, attention_mask=additive[:, None, None, :]).last_hidden_state


def masked_mean(tokens: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    weights = kept.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1)


def reference(name: str, stock: torch.nn.Module, pixel_values: torch.Tensor, keep: list[list[int]]) -> torch.Tensor:
    """Image features (zero-shot models) or logits (classifiers) by the stock modules, removed tokens masked."""
    kept = keep_matrix(keep)
    vision = stock.vision_model
    if name.startswith("clip"):
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        kept_tokens = torch.cat((torch.ones(len(keep), 1, dtype=torch.bool), kept), dim=1)
        sequence = masked_encoder(vision, hidden, kept_tokens)
        if name == "clip":
            return stock.visual_projection(vision.post_layernorm(sequence[:, 0]))
        return stock.classifier(masked_mean(sequence[:, 1:], kept))
    sequence = vision.post_layernorm(masked_encoder(vision, vision.embeddings(pixel_values), kept))
    if name == "siglip_classifier":
        return stock.classifier(masked_mean(sequence, kept))
    head = vision.head
    probe = head.probe.repeat(len(keep), 1, 1)
    pooled = head.attention(probe, sequence, sequence, key_padding_mask=~kept)[0]
    pooled = pooled + head.mlp(head.layernorm(pooled))
    return pooled[:, 0]


def our_output(name: str, model: torch.nn.Module, pixel_values: torch.Tensor, embedding_mask=None) -> torch.Tensor:
    if name.endswith("classifier"):
        return model(pixel_values, embedding_mask=embedding_mask).logits
    return model.get_image_features(pixel_values, embedding_mask=embedding_mask).pooler_output


def stock_output(name: str, model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    if name.endswith("classifier"):
        return model(pixel_values).logits
    return model.get_image_features(pixel_values).pooler_output


def test_stock_checkpoints_load_and_give_the_stock_outputs_exactly(checkpoint, pixel_values, input_ids):
    name, path = checkpoint
    stock_class = MODELS[name][0]
    stock = stock_class.from_pretrained(path).eval()
    ours, info = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path, output_loading_info=True)
    ours.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        expected = stock_output(name, stock, pixel_values)
        assert torch.equal(our_output(name, ours, pixel_values), expected)
        assert torch.equal(our_output(name, ours, pixel_values, torch.arange(16).expand(3, 16)), expected)
        if not name.endswith("classifier"):
            got = ours(input_ids=input_ids, pixel_values=pixel_values)
            want = stock(input_ids=input_ids, pixel_values=pixel_values)
            assert type(got) is type(want)
            assert torch.equal(got.logits_per_image, want.logits_per_image)
            assert torch.equal(got.text_embeds, want.text_embeds)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_removal_equals_the_stock_masked_reference(checkpoint, pixel_values, attn_implementation):
    name, path = checkpoint
    stock, ours = load_pair(name, path, attn_implementation)
    worst = 0.0
    with torch.no_grad():
        full = stock_output(name, stock, pixel_values)
        for keep in KEEPS:
            got = our_output(name, ours, pixel_values, keep)
            expected = reference(name, stock, pixel_values, keep)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            worst = max(worst, float((got - expected).abs().max()))
            assert not torch.allclose(got, full, atol=1e-4)  # removal changed the output: the check means something
    print(f"{name} {attn_implementation}: max |delta| = {worst:.2e}")


def test_forward_gives_the_mask_to_the_vision_tower_only(zero_shot_checkpoint, pixel_values, input_ids):
    name, path = zero_shot_checkpoint
    _, ours = load_pair(name, path)
    seen = []
    handle = ours.text_model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(set(kwargs)),
                                                       with_kwargs=True)
    keep = KEEPS[0]
    with torch.no_grad():
        out = ours(input_ids=input_ids, pixel_values=pixel_values, embedding_mask=keep)
        image = F.normalize(ours.get_image_features(pixel_values, embedding_mask=keep).pooler_output, dim=-1)
        text = F.normalize(ours.get_text_features(input_ids=input_ids).pooler_output, dim=-1)
    handle.remove()
    assert seen and all("embedding_mask" not in kwargs for kwargs in seen)
    scale, bias = ours.logit_parameters()
    expected = scale.exp() * image @ text.T + (bias if bias is not None else 0)
    torch.testing.assert_close(out.logits_per_image, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.image_embeds, image, rtol=1e-5, atol=1e-6)


def test_empty_coalition(checkpoint, pixel_values):
    name, path = checkpoint
    _, ours = load_pair(name, path)
    with torch.no_grad():
        empty = our_output(name, ours, pixel_values, [[], [], []])
    assert torch.isfinite(empty).all()
    torch.testing.assert_close(empty[0], empty[1])  # no patch: every image looks the same
    torch.testing.assert_close(empty[0], empty[2])
    if name.endswith("classifier"):  # the mean of no token is the zero vector: the logits are the bias
        torch.testing.assert_close(empty[0], ours.classifier.bias)
    elif name == "clip":  # CLS alone through the encoder
        vision = ours.vision_model
        cls = vision.pre_layrnorm(vision.embeddings.class_embedding + vision.embeddings.position_embedding.weight[0])
        with torch.no_grad():
            alone = vision.encoder(inputs_embeds=cls.view(1, 1, -1)).last_hidden_state
            torch.testing.assert_close(empty[0], ours.visual_projection(vision.post_layernorm(alone[0, 0])))
    else:  # the stock pooling head on no token: its attention's output projection gives its bias
        head = ours.vision_model.head
        with torch.no_grad():
            torch.testing.assert_close(empty, head(torch.zeros(3, 0, 32)), rtol=1e-5, atol=1e-6)


def test_saved_subclass_round_trips_and_loads_in_the_stock_class(checkpoint, tmp_path, pixel_values):
    name, path = checkpoint
    stock_class = MODELS[name][0]
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path).eval()
    ours.save_pretrained(tmp_path)
    again, info = type(ours).from_pretrained(tmp_path, output_loading_info=True)
    stock, stock_info = stock_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()) and not any(stock_info.values())
    with torch.no_grad():
        expected = our_output(name, ours, pixel_values)
        assert torch.equal(our_output(name, again.eval(), pixel_values), expected)
        assert torch.equal(stock_output(name, stock.eval(), pixel_values), expected)


def test_larger_inputs_interpolate_positions_as_the_stock_class(checkpoint):
    name, path = checkpoint
    stock_class = MODELS[name][0]
    stock = stock_class.from_pretrained(path).eval()
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path).eval()
    bigger = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        if name.endswith("classifier"):
            assert torch.equal(ours(bigger, interpolate_pos_encoding=True).logits,
                               stock(bigger, interpolate_pos_encoding=True).logits)
        else:
            assert torch.equal(ours.get_image_features(bigger, interpolate_pos_encoding=True).pooler_output,
                               stock.get_image_features(bigger, interpolate_pos_encoding=True).pooler_output)
        keep = [[0, 35], [7, 20]]
        if name.endswith("classifier"):
            subset = ours(bigger, interpolate_pos_encoding=True, embedding_mask=keep).logits
        else:
            subset = ours.get_image_features(bigger, interpolate_pos_encoding=True, embedding_mask=keep).pooler_output
    assert torch.isfinite(subset).all()


def test_siglip_without_pooling_head_has_no_image_feature(tmp_path, pixel_values):
    config = tiny_image_text_config("siglip")
    config.vision_config.vision_use_head = False
    SiglipModel(config).save_pretrained(tmp_path)
    ours, info = TOKEN_CLASSES["SiglipModel"].from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert ours.eval().get_image_features(pixel_values, embedding_mask=KEEPS[0]).pooler_output is None
    with pytest.raises(ValueError, match="vision_use_head=False"):
        ours.head(torch.zeros(3, 4, 32))


def test_mean_of_no_token_is_zero():
    assert torch.equal(mean_or_zeros(torch.ones(2, 0, 3)), torch.zeros(2, 3))


@pytest.mark.parametrize("name", ["clip_classifier", "siglip_classifier"])
def test_classifier_removal_adapter_with_and_without_the_engine_equals_the_forward(name, pixel_values):
    from moxi_hf.removal import TokenRemoval

    stock = stock_model(name)
    ours = TOKEN_CLASSES[type(stock).__name__](stock.config).eval()
    ours.load_state_dict(stock.state_dict())
    adapter = TokenRemoval(ours)
    keep = torch.zeros(3, 16, dtype=torch.bool)
    keep[0, [1, 2, 3]] = keep[1, [0, 7, 9]] = keep[2, [4, 5, 15]] = True
    with torch.no_grad():
        expected = ours(pixel_values, embedding_mask=keep).logits
    fast = adapter.prepare(pixel_values)
    assert fast.encoder is not None
    torch.testing.assert_close(adapter.logits(fast, torch.arange(3), keep), expected, rtol=1e-5, atol=1e-5)
    empty = adapter.logits(fast, torch.arange(3), torch.zeros(3, 16, dtype=torch.bool))
    torch.testing.assert_close(empty, ours.classifier.bias.expand(3, -1), rtol=1e-5, atol=1e-6)
    adapter.fast = False
    slow = adapter.prepare(pixel_values)
    assert slow.encoder is None
    torch.testing.assert_close(adapter.logits(slow, torch.arange(3), keep), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["clip_classifier", "siglip_classifier"])
def test_every_method_runs_on_the_classifiers_through_the_explainer(name, tmp_path, pixel_values):
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    from moxi_hf import Explainer

    stock_model(name).save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(tmp_path)
    explainer = Explainer.from_pretrained(str(tmp_path))
    assert explainer.adapter.masking == "token" and type(explainer.model).__name__ == f"MoXI{MODELS[name][0].__name__}"
    for method in ("moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++", "attention-rollout"):
        explanation = explainer.explain(pixel_values[0], method=method)
        assert sorted(explanation.order) == list(range(16)), method
