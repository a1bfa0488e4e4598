"""Token removal for every ViT-family classifier: equivalence with the stock modules, empty coalition, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BeitConfig,
    BeitForImageClassification,
    Data2VecVisionConfig,
    Data2VecVisionForImageClassification,
    DeiTConfig,
    DeiTForImageClassification,
    Dinov2Config,
    Dinov2ForImageClassification,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersForImageClassification,
    IJepaConfig,
    IJepaForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTMSNConfig,
    ViTMSNForImageClassification,
)
from transformers.conversion_mapping import get_checkpoint_conversion_mapping
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from helpers import TINY
from moxi_hf import Explainer, ValueFunction, load_explainable_model
from moxi_hf.cli import main
from moxi_hf.modeling import TOKEN_CLASSES, TokenRemovalClassifier

TINY_DINO = {key: value for key, value in TINY.items() if key != "intermediate_size"} | {"mlp_ratio": 2}

#: name -> (stock class, config, backbone attribute, stock backbone class name, special tokens)
ARCHITECTURES = {
    "vit": (ViTForImageClassification, lambda: ViTConfig(**TINY), "vit", "ViTModel", 1),
    "deit": (DeiTForImageClassification, lambda: DeiTConfig(**TINY), "deit", "DeiTModel", 2),
    "vit_msn": (ViTMSNForImageClassification, lambda: ViTMSNConfig(**TINY), "vit", "ViTMSNModel", 1),
    "dinov2": (Dinov2ForImageClassification, lambda: Dinov2Config(**TINY_DINO), "dinov2", "Dinov2Model", 1),
    "dinov2_registers": (Dinov2WithRegistersForImageClassification,
                         lambda: Dinov2WithRegistersConfig(**TINY_DINO, num_register_tokens=2),
                         "dinov2_with_registers", "Dinov2WithRegistersModel", 3),
    "beit": (BeitForImageClassification,
             lambda: BeitConfig(**TINY, use_relative_position_bias=True, use_mean_pooling=True),
             "beit", "BeitModel", 1),
    "beit_shared_bias": (BeitForImageClassification,
                         lambda: BeitConfig(**TINY, use_shared_relative_position_bias=True,
                                            use_absolute_position_embeddings=True, use_mean_pooling=False),
                         "beit", "BeitModel", 1),
    "ijepa": (IJepaForImageClassification, lambda: IJepaConfig(**TINY), "ijepa", "IJepaModel", 0),
    "data2vec": (Data2VecVisionForImageClassification,
                 lambda: Data2VecVisionConfig(**TINY, use_relative_position_bias=True, use_mean_pooling=True),
                 "data2vec_vision", "Data2VecVisionModel", 1),
}

KEEPS = [
    [[0, 5, 9, 15], [1, 2, 3, 4], [15, 14, 7, 0]],
    [[6], [0], [15]],  # a single kept patch
    [list(range(16))] * 3,
]


def stock_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random stock classifier; every parameter jittered so zero-initialised biases matter too."""
    stock_class, config, *_ = ARCHITECTURES[name]
    torch.manual_seed(seed)
    model = stock_class(config()).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request, tmp_path_factory):
    name = request.param
    path = tmp_path_factory.mktemp(name)
    stock_model(name).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(path)
    return name, str(path)


def masked_mean(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (tokens * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)


def reference_logits(name: str, stock: torch.nn.Module, pixel_values: torch.Tensor, keep: list[list[int]]):
    """Removal by the stock modules: removed tokens masked out of attention as keys and out of the pooling."""
    special = ARCHITECTURES[name][4]
    kept = torch.zeros(len(keep), 16)
    for row, patches in enumerate(keep):
        kept[row, patches] = 1
    attention_mask = torch.cat((torch.ones(len(keep), special), kept), dim=1)
    backbone = stock.beit if name == "data2vec" else getattr(stock, ARCHITECTURES[name][2])
    sequence = backbone(pixel_values, attention_mask=attention_mask).last_hidden_state
    if name in ("vit", "deit", "vit_msn"):
        return stock.classifier(sequence[:, 0])
    if name.startswith("dinov2"):
        return stock.classifier(torch.cat([sequence[:, 0], masked_mean(sequence[:, special:], kept)], dim=1))
    if name in ("beit", "data2vec"):
        return stock.classifier(backbone.pooler.layernorm(masked_mean(sequence[:, 1:], kept)))
    if name == "beit_shared_bias":
        return stock.classifier(sequence[:, 0])
    return stock.classifier(masked_mean(sequence, kept))  # ijepa


def beit_twin(path: str, tmp_path) -> BeitForImageClassification:
    """The BEiT classifier with a Data2Vec-vision checkpoint's weights (same architecture, own code)."""
    state = load_file(f"{path}/model.safetensors")
    save_file({key.replace("data2vec_vision.", "beit."): value for key, value in state.items()},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads(Path(path, "config.json").read_text())
    config.update(model_type="beit", architectures=["BeitForImageClassification"])
    for key in ("out_indices", "out_features", "stage_names"):
        config.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    model, info = BeitForImageClassification.from_pretrained(tmp_path, attn_implementation="eager",
                                                             output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    return model.eval()


def load_pair(name: str, path: str, attn_implementation: str = "sdpa", tmp_path=None):
    stock_class = ARCHITECTURES[name][0]
    if name == "data2vec":  # its stock forward takes no attention mask: BEiT with the same weights is the reference
        stock = beit_twin(path, tmp_path)
    else:
        stock = stock_class.from_pretrained(path, attn_implementation="eager").eval()
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path, attn_implementation=attn_implementation).eval()
    return stock, ours


def test_no_mask_and_all_kept_equal_the_stock_class_exactly(arch, pixel_values):
    name, path = arch
    stock_class = ARCHITECTURES[name][0]
    stock = stock_class.from_pretrained(path).eval()
    ours, info = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path, output_loading_info=True)
    ours.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        expected = stock(pixel_values).logits
        assert torch.equal(ours(pixel_values).logits, expected)
        assert torch.equal(ours(pixel_values, embedding_mask=torch.arange(16).expand(3, 16)).logits, expected)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_removal_equals_the_stock_attention_mask_reference(arch, pixel_values, attn_implementation, tmp_path):
    name, path = arch
    stock, ours = load_pair(name, path, attn_implementation, tmp_path)
    worst = 0.0
    with torch.no_grad():
        full = stock(pixel_values).logits
        for keep in KEEPS:
            got = ours(pixel_values, embedding_mask=keep).logits
            expected = reference_logits(name, stock, pixel_values, keep)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            worst = max(worst, float((got - expected).abs().max()))
            if len(keep[0]) < 16:  # removal must change the output, or the comparison proves nothing
                assert not torch.allclose(got, full, atol=1e-4)
    print(f"{name} {attn_implementation}: max |dlogit| = {worst:.2e}")


def test_token_values_equal_the_model_forward(arch, pixel_values):
    name, path = arch
    loaded = load_explainable_model(path)
    assert loaded.adapter.masking == "token" and isinstance(loaded.model, TokenRemovalClassifier)
    keep = torch.zeros(3, 16, dtype=torch.bool)
    keep[0, [1, 2, 3]] = keep[1, [0, 7, 9]] = keep[2, [4, 5, 15]] = True
    prepared = loaded.adapter.prepare(pixel_values)
    got = loaded.adapter.logits(prepared, torch.arange(3), keep)
    with torch.no_grad():
        expected = loaded.model(pixel_values, embedding_mask=keep).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_empty_coalition_is_finite(arch, pixel_values):
    name, path = arch
    loaded = load_explainable_model(path)
    with torch.no_grad():
        logits = loaded.model(pixel_values, embedding_mask=[[], [], []]).logits
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[0], logits[1])  # no patch: every image looks the same
    game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2])
    values = game(torch.zeros(3, 16, dtype=torch.bool), torch.arange(3))
    assert torch.isfinite(values).all()
    if name == "ijepa":  # no token at all: the mean of nothing is the zero vector, logits = the bias
        torch.testing.assert_close(logits[0], loaded.model.classifier.bias)


def test_saved_subclass_round_trips_and_loads_in_the_stock_class(arch, tmp_path, pixel_values):
    name, path = arch
    stock_class = ARCHITECTURES[name][0]
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path).eval()
    ours.save_pretrained(tmp_path)
    again = type(ours).from_pretrained(tmp_path).eval()
    stock = stock_class.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = ours(pixel_values).logits
        assert torch.equal(again(pixel_values).logits, expected)
        assert torch.equal(stock(pixel_values).logits, expected)


def _old_key(key: str, rules) -> str:
    for rule in reversed(rules):
        for source, target in zip(rule.source_patterns, rule.target_patterns, strict=False):
            key = key.replace(target, source.replace("\\", ""))
    return key


def test_transformers_4_checkpoint_keys_load(arch, tmp_path, pixel_values):
    name, path = arch
    stock_class, _, _, backbone_class, _ = ARCHITECTURES[name]
    rules = get_checkpoint_conversion_mapping(backbone_class)
    if rules is None:
        pytest.skip(f"{backbone_class} checkpoint keys did not change in transformers 5")
    state = load_file(f"{path}/model.safetensors")
    # save_pretrained may already write the transformers-4 names; rename whatever is left.
    new_names = set(stock_class.from_pretrained(path).state_dict())
    old = {_old_key(key, rules) if key in new_names else key: value for key, value in state.items()}
    old_names = [source.replace("\\", "") for rule in rules for source in rule.source_patterns]
    assert any(name in key for key in old for name in old_names)  # the checkpoint uses the old names
    save_file(old, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(json.loads(Path(path, "config.json").read_text())))
    ours, info = TOKEN_CLASSES[stock_class.__name__].from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        expected = stock_class.from_pretrained(path).eval()(pixel_values).logits
        assert torch.equal(ours.eval()(pixel_values).logits, expected)


@pytest.mark.parametrize("method", ["moxi", "self-shapley", "gradcam", "attention-rollout"])
def test_methods_run_and_leave_the_model_unchanged(arch, method, pixel_values):
    name, path = arch
    explainer = Explainer.from_pretrained(path)
    model = explainer.model
    before = {key: value.clone() for key, value in model.state_dict().items()}
    implementation = model.config._attn_implementation
    grads = [parameter.requires_grad for parameter in model.parameters()]
    explanation = explainer.explain(pixel_values[0], method=method)
    assert sorted(explanation.order) == list(range(16))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert model.config._attn_implementation == implementation
    assert [parameter.requires_grad for parameter in model.parameters()] == grads
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not any(module._forward_hooks for module in model.modules())


def test_cli_explain_with_token_masking(arch, tmp_path, capsys):
    name, path = arch
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (120, 30, 200)).save(image)
    code = main(["explain", "--quiet", "--model", path, "--masking", "token", "--image", str(image),
                 "--method", "self-shapley", "--output-dir", str(tmp_path / "out")])
    assert code == 0


def _save_pixel_model(model: torch.nn.Module, path) -> str:
    model.save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=["swin", "convnext"])
def pixel_model_dir(request, tmp_path_factory):
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        SwinConfig,
        SwinForImageClassification,
    )

    torch.manual_seed(5)
    if request.param == "swin":
        config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                            window_size=2, num_labels=4)
        model = SwinForImageClassification(config)
    else:
        config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=4)
        model = ConvNextForImageClassification(config)
    return request.param, _save_pixel_model(model.eval(), tmp_path_factory.mktemp(request.param))


def test_hierarchical_and_conv_models_get_pixel_masking_on_7x7(pixel_model_dir):
    name, path = pixel_model_dir
    explainer = Explainer.from_pretrained(path)
    assert explainer.adapter.masking == "pixel" and explainer.adapter.grid == (7, 7)
    image = torch.randn(3, 32, 32)
    for method in ("moxi", "gradcam"):
        explanation = explainer.explain(image, method=method)
        assert explanation.grid == (7, 7) and sorted(explanation.order) == list(range(49))
    with pytest.raises(Exception, match="attention-rollout needs"):
        explainer.explain(image, method="attention-rollout")
    coarse = Explainer.from_pretrained(path, players_grid=4)
    assert coarse.adapter.grid == (4, 4)
    assert coarse.explain(image, method="self-shapley").grid == (4, 4)


def test_gradcam_layers(pixel_model_dir, arch, pixel_values):
    name, path = pixel_model_dir
    from moxi_hf import get_method
    from moxi_hf.methods.gradcam import cam_layer

    explainer = Explainer.from_pretrained(path)
    _, layer = cam_layer(explainer.adapter, torch.randn(1, 3, 32, 32))
    # Swin: the final LayerNorm over the last stage's tokens; ConvNeXt: its last stage.
    assert layer == ("swin.layernorm" if name == "swin" else "convnext.encoder.stages.1")
    token_name, token_path = arch
    token_explainer = Explainer.from_pretrained(token_path)
    _, token_layer = cam_layer(token_explainer.adapter, pixel_values)
    assert ".1." in token_layer  # the last of the two encoder layers
    game = ValueFunction(token_explainer.adapter, pixel_values[:1], [0])
    assert get_method("gradcam").attribute(game, "insertion").settings == {"cam_layer": token_layer}


def test_gradcam_layer_is_recorded_in_the_explanation_and_the_artifact_settings(vit_dir, pixel_values, tmp_path):
    from moxi_hf import Explanation
    from moxi_hf.artifacts import save_explanations

    explainer = Explainer.from_pretrained(vit_dir)
    cam = explainer.explain(pixel_values[0], method="gradcam")
    assert cam.settings == {"cam_layer": "vit.layers.1.layernorm_before"}
    assert Explanation.from_dict(cam.to_dict()).settings == cam.settings
    plain = explainer.explain(pixel_values[0], method="self-shapley")
    assert plain.settings == {}
    config = json.loads((save_explanations(tmp_path / "both", [cam, plain], model=vit_dir) / "config.json").read_text())
    assert config["method_settings"] == {"gradcam": {"cam_layer": "vit.layers.1.layernorm_before"}}
    config = json.loads((save_explanations(tmp_path / "plain", [plain], model=vit_dir) / "config.json").read_text())
    assert "method_settings" not in config


def test_two_methods_on_one_model_from_two_threads_equal_sequential_runs(tmp_path, pixel_values):
    import threading

    stock_model("dinov2").save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(tmp_path)
    explainer = Explainer.from_pretrained(str(tmp_path))
    methods = ["attention-rollout", "gradcam", "moxi", "self-shapley"]
    expected = {method: explainer.explain(pixel_values[0], method=method) for method in methods}
    results: dict[tuple[str, int], object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(methods))

    def work(method: str) -> None:
        try:
            start.wait()
            for round_ in range(3):
                results[method, round_] = explainer.explain(pixel_values[0], method=method)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(method,)) for method in methods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for (method, _), explanation in results.items():
        assert explanation.order == expected[method].order
        torch.testing.assert_close(torch.tensor(explanation.scores), torch.tensor(expected[method].scores))
    assert explainer.model.config._attn_implementation == "sdpa"


def test_larger_inputs_interpolate_positions_as_the_stock_class(arch):
    name, path = arch
    stock_class = ARCHITECTURES[name][0]
    stock = stock_class.from_pretrained(path).eval()
    ours = TOKEN_CLASSES[stock_class.__name__].from_pretrained(path).eval()
    bigger = torch.randn(2, 3, 24, 24)
    # DINOv2 always interpolates and takes no such argument.
    kwargs = {} if name.startswith("dinov2") else {"interpolate_pos_encoding": True}
    with torch.no_grad():
        assert torch.equal(ours(bigger, **kwargs).logits, stock(bigger, **kwargs).logits)
        subset = ours(bigger, embedding_mask=[[0, 35], [7, 20]], **kwargs).logits
    assert subset.shape == (2, 5) and torch.isfinite(subset).all()
