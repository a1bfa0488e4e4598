"""The value function, rewards, players and both removal adapters."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from helpers import save_checkpoint, tiny_model
from moxi_hf import Explainer, MoXIError, PixelMasking, Players, ValueFunction, load_explainable_model
from moxi_hf.value import label_probabilities, predicted_classes, reward_from_logits


def test_rewards_match_their_formulas():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0]])
    labels = torch.tensor([0, 2])
    probs = torch.softmax(logits, dim=1)
    p = probs[torch.arange(2), labels]
    torch.testing.assert_close(reward_from_logits(logits, labels, "log-odds"), torch.log(p / (1 - p)))
    torch.testing.assert_close(reward_from_logits(logits, labels, "log-prob"), torch.log(p))
    torch.testing.assert_close(reward_from_logits(logits, labels, "logit"), logits[torch.arange(2), labels])
    with pytest.raises(MoXIError, match="unknown reward"):
        reward_from_logits(logits, labels, "odds")


def test_token_values_equal_the_model_with_embedding_mask(vit_dir, pixel_values):
    loaded = load_explainable_model(vit_dir)
    game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2], reward="logit")
    keep = torch.zeros(3, 16, dtype=torch.bool)
    keep[0, [0, 5]] = keep[1, [3, 4]] = keep[2, [9, 15]] = True
    with torch.no_grad():
        expected = loaded.model(pixel_values, embedding_mask=keep).logits
    torch.testing.assert_close(game.logits(keep, torch.arange(3)), expected)
    torch.testing.assert_close(game(keep, torch.arange(3)), expected[torch.arange(3), torch.tensor([0, 1, 2])])


def test_patch_embeddings_are_computed_once_per_image(vit_dir, pixel_values):
    loaded = load_explainable_model(vit_dir)
    calls = []
    hook = loaded.model.vit.embeddings.patch_embeddings.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2])
        game(torch.rand(40, 16) > 0.5, torch.arange(40) % 3)
        game(torch.rand(40, 16) > 0.5, torch.arange(40) % 3)
    finally:
        hook.remove()
    assert calls == [3]


def test_mixed_sizes_and_chunking_give_the_same_values(deit_teacher_dir, pixel_values):
    loaded = load_explainable_model(deit_teacher_dir)
    generator = torch.Generator().manual_seed(0)
    coalitions = torch.rand(60, 16, generator=generator) > torch.rand(60, 1, generator=generator)
    owner = torch.randint(0, 3, (60,), generator=generator)
    one_batch = ValueFunction(loaded.adapter, pixel_values, [1, 2, 3], max_tokens=10**6)
    chunked = ValueFunction(loaded.adapter, pixel_values, [1, 2, 3], max_batch_size=3, max_tokens=40)
    singles = torch.stack([one_batch(coalitions[i : i + 1], owner[i : i + 1])[0] for i in range(60)])
    torch.testing.assert_close(chunked(coalitions, owner), one_batch(coalitions, owner), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(singles, one_batch(coalitions, owner), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        row = 7
        kept = coalitions[row].nonzero().squeeze(1).unsqueeze(0)
        expected = loaded.model(pixel_values[owner[row]][None], embedding_mask=kept).logits
    torch.testing.assert_close(one_batch.logits(coalitions[row : row + 1], owner[row : row + 1]), expected)


def test_grouped_players_cover_their_patches(vit_dir, pixel_values):
    players = Players.build((4, 4), 2)
    assert players.n_players == 4 and players.group == (2, 2)
    coalition = torch.tensor([[True, False, False, True]])
    patches = players.to_patches(coalition).view(4, 4)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(patches, expected)
    assert torch.equal(players.from_patch_scores(torch.arange(16.0)), torch.tensor([10.0, 18.0, 42.0, 50.0]))

    loaded = load_explainable_model(vit_dir)
    coarse = ValueFunction(loaded.adapter, pixel_values[:1], [0], players=players)
    fine = ValueFunction(loaded.adapter, pixel_values[:1], [0])
    torch.testing.assert_close(coarse(coalition), fine(patches.view(1, 16)))


@pytest.mark.parametrize("grid", [3, (4, 3), 5])
def test_players_grid_must_divide_the_patch_grid(grid):
    with pytest.raises(MoXIError, match="does not divide"):
        Players.build((4, 4), grid)


def test_bad_labels_and_shapes(vit_dir, pixel_values):
    loaded = load_explainable_model(vit_dir)
    with pytest.raises(MoXIError, match="out of range"):
        ValueFunction(loaded.adapter, pixel_values, [0, 1, 5])
    with pytest.raises(MoXIError, match="3 images"):
        ValueFunction(loaded.adapter, pixel_values, [0, 1])
    game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2])
    with pytest.raises(MoXIError, match="image_index is required"):
        game(torch.ones(2, 16, dtype=torch.bool))
    with pytest.raises(MoXIError, match="coalitions must be"):
        game(torch.ones(2, 15, dtype=torch.bool), torch.zeros(2))


def test_pixel_masking_all_present_equals_plain_forward(resnet_dir):
    loaded = load_explainable_model(resnet_dir, grid=4)
    assert isinstance(loaded.adapter, PixelMasking)
    images = torch.randn(2, 3, 32, 32)
    game = ValueFunction(loaded.adapter, images, [0, 1], reward="logit")
    with torch.no_grad():
        expected = loaded.model(pixel_values=images).logits
        nothing = loaded.model(pixel_values=torch.zeros_like(images)).logits
    torch.testing.assert_close(game.logits(torch.ones(2, 16, dtype=torch.bool), torch.arange(2)), expected)
    torch.testing.assert_close(game.logits(torch.zeros(2, 16, dtype=torch.bool), torch.arange(2)), nothing)


class _Recorder(torch.nn.Module):
    """A stand-in classifier that records the pixel_values it is shown."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(num_labels=2)
        self.seen = []

    def forward(self, pixel_values):
        self.seen.append(pixel_values.clone())
        return SimpleNamespace(logits=torch.zeros(pixel_values.shape[0], 2))


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
def test_pixel_masking_replaces_removed_cells_by_the_baseline(baseline):
    recorder = _Recorder()
    adapter = PixelMasking(recorder, (2, 2), baseline=baseline)
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    game = ValueFunction(adapter, image, [0])
    game(torch.tensor([[True, False, False, True]]))
    shown = recorder.seen[-1][0]
    kept = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(shown[:, kept], image[0][:, kept])
    removed = shown[:, ~kept]
    if baseline == "zero":
        assert torch.equal(removed, torch.zeros_like(removed))
    elif baseline == "mean":
        means = image[0].mean(dim=(1, 2), keepdim=True).expand(2, 4, 4)[:, ~kept]
        torch.testing.assert_close(removed, means)
    else:
        assert not torch.equal(removed, image[0][:, ~kept])  # blurred, so changed ...
        assert removed.min() >= image.min() and removed.max() <= image.max()  # ... but a weighted mean


def test_unknown_pixel_baseline_is_refused(resnet_dir):
    with pytest.raises(MoXIError, match="unknown pixel baseline"):
        load_explainable_model(resnet_dir, baseline="noise")


def test_token_masking_on_a_model_without_patches_is_a_clear_error(resnet_dir):
    with pytest.raises(MoXIError, match="token masking needs a model with patch tokens"):
        load_explainable_model(resnet_dir, masking="token")


def test_loader_errors(tmp_path):
    with pytest.raises(MoXIError, match="does not exist"):
        load_explainable_model(str(tmp_path / "missing"))
    with pytest.raises(MoXIError, match="no config.json"):
        load_explainable_model(str(tmp_path))
    with pytest.raises(MoXIError, match="unknown masking"):
        load_explainable_model(str(tmp_path), masking="tokens")


def test_bfloat16_values_are_close_to_float32(vit_dir, pixel_values):
    fp32 = load_explainable_model(vit_dir)
    bf16 = load_explainable_model(vit_dir, dtype="bfloat16")
    assert bf16.adapter.dtype == torch.bfloat16
    coalitions = torch.rand(10, 16, generator=torch.Generator().manual_seed(1)) > 0.4
    owner = torch.arange(10) % 3
    high = ValueFunction(fp32.adapter, pixel_values, [0, 1, 2])(coalitions, owner)
    low = ValueFunction(bf16.adapter, pixel_values, [0, 1, 2])(coalitions, owner)
    assert low.dtype == torch.float32
    assert math.isfinite(float(low.sum()))
    torch.testing.assert_close(low, high, atol=0.1, rtol=0.05)


def test_sigmoid_rewards_read_each_class_on_its_own():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.2, 4.0]])
    labels = torch.tensor([0, 0])
    assert torch.equal(reward_from_logits(logits, labels, "log-odds", "sigmoid"), torch.tensor([2.0, -3.0]))
    torch.testing.assert_close(reward_from_logits(logits, labels, "log-prob", "sigmoid"),
                               torch.log(torch.sigmoid(torch.tensor([2.0, -3.0]))))
    torch.testing.assert_close(label_probabilities(logits, labels, "sigmoid"), torch.sigmoid(torch.tensor([2.0, -3.0])))
    # log-odds under a sigmoid is log p/(1 - p) of the label's own probability
    p = label_probabilities(logits, labels, "sigmoid")
    torch.testing.assert_close(torch.log(p / (1 - p)), reward_from_logits(logits, labels, "log-odds", "sigmoid"))
    assert predicted_classes(logits, labels, "sigmoid", "threshold").tolist() == [0, -1]
    assert predicted_classes(logits, labels, "sigmoid", "argmax").tolist() == [0, 2]
    with pytest.raises(MoXIError, match="threshold decision needs the sigmoid"):
        predicted_classes(logits, labels, "softmax", "threshold")
    with pytest.raises(MoXIError, match="unknown link"):
        reward_from_logits(logits, labels, "log-odds", "tanh")


@pytest.mark.parametrize("overrides, rule", [
    ({}, ("softmax", "argmax")),
    ({"problem_type": "multi_label_classification"}, ("sigmoid", "threshold")),
    ({"num_labels": 1}, ("sigmoid", "threshold")),
])
def test_a_classifier_is_read_as_transformers_pipeline_reads_it(tmp_path, pixel_values, overrides, rule):
    folder = save_checkpoint(tiny_model(**overrides), tmp_path)
    explainer = Explainer.from_pretrained(folder)
    assert (explainer.adapter.link, explainer.adapter.decision) == rule
    game = explainer.value_function(pixel_values[:1], [0])
    full = torch.ones(1, game.n_players, dtype=torch.bool)
    out = game.evaluate(full)
    logits = explainer.adapter.full_logits(pixel_values[:1])
    expected = torch.sigmoid(logits[:, 0]) if rule[0] == "sigmoid" else torch.softmax(logits, dim=1)[:, 0]
    torch.testing.assert_close(out.probabilities, expected, atol=1e-5, rtol=0)
    if rule[0] == "sigmoid":
        torch.testing.assert_close(out.values, logits[:, 0], atol=1e-5, rtol=0)
        assert out.predictions.tolist() == [0 if logits[0, 0] > 0 else -1]


def test_a_regression_checkpoint_is_refused(tmp_path):
    folder = save_checkpoint(tiny_model(num_labels=1, problem_type="regression"), tmp_path)
    with pytest.raises(MoXIError, match="regression model"):
        Explainer.from_pretrained(folder)
