"""Methods: exactness against plain reference code and toy games with known answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformers import ViTForImageClassification

from benchmarks.naive import brute_force_greedy
from moxi_hf import Explainer, MoXIError, ValueFunction, get_method, load_explainable_model
from moxi_hf.methods.attention_rollout import rollout
from moxi_hf.methods.full_shapley import sample_contexts
from moxi_hf.metrics import heatmap_from_order, measure_curves, patches_needed
from moxi_hf.value import ValueOutput


class ToyGame:
    """A value function given by a Python set function v(S) (no model)."""

    def __init__(self, value, n_players: int, n_images: int = 1):
        self.value = value
        self.n_players = n_players
        self.n_images = n_images
        self.labels = torch.zeros(n_images, dtype=torch.long)

    def evaluate(self, coalitions, image_index=None):
        values = torch.tensor([self.value(set(row.nonzero().flatten().tolist())) for row in coalitions],
                              dtype=torch.float32)
        return ValueOutput(values, (values > 0).long() * 0 + (values <= 0).long(), torch.sigmoid(values))

    def __call__(self, coalitions, image_index=None):
        return self.evaluate(coalitions, image_index).values


WEIGHTS = [0.5, 3.0, -1.0, 3.0, 2.0, 0.0]


def additive(subset):
    return float(sum(WEIGHTS[i] for i in subset))


@pytest.mark.parametrize("method", ["moxi", "self-shapley"])
@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_additive_game_gives_the_analytic_order(method, curve):
    # Descending weight; the tie between players 1 and 3 goes to the lower index.
    attribution = get_method(method).attribute(ToyGame(additive, 6), curve)
    assert attribution.order[0].tolist() == [1, 3, 4, 0, 5, 2]
    torch.testing.assert_close(attribution.scores[0], torch.tensor(WEIGHTS))


def test_moxi_finds_an_interacting_pair_that_self_shapley_misses():
    # Players 2 and 3 are worthless alone but worth 10 together.
    def game(subset):
        return additive(subset) + (10.0 if {2, 3} <= subset else 0.0)

    moxi = get_method("moxi").attribute(ToyGame(game, 6), "insertion").order[0].tolist()
    self_shapley = get_method("self-shapley").attribute(ToyGame(game, 6), "insertion").order[0].tolist()
    assert self_shapley[-1] == 2  # alone, player 2 is the worst
    assert moxi[:3] == [1, 3, 2]  # once 3 is in, 2 completes the pair


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_moxi_equals_brute_force_greedy_on_a_4x4_grid(vit_dir, pixel_values, curve):
    loaded = load_explainable_model(vit_dir)
    batched = ValueFunction(loaded.adapter, pixel_values, [0, 3, 4])
    orders = get_method("moxi").attribute(batched, curve).order
    for image in range(3):
        single = ValueFunction(loaded.adapter, pixel_values[image : image + 1], [int(batched.labels[image])])
        assert orders[image].tolist() == brute_force_greedy(single, curve)


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_moxi_first_pick_is_the_self_shapley_top(vit_dir, pixel_values, curve):
    loaded = load_explainable_model(vit_dir)
    game = ValueFunction(loaded.adapter, pixel_values, [1, 1, 2])
    moxi = get_method("moxi").attribute(game, curve)
    self_shapley = get_method("self-shapley").attribute(game, curve)
    assert torch.equal(moxi.order[:, 0], self_shapley.order[:, 0])
    # MoXI's first score is the self-context Shapley value of the first pick.
    first = moxi.order[:, 0]
    torch.testing.assert_close(moxi.scores[torch.arange(3), first], self_shapley.scores[torch.arange(3), first])


def test_moxi_curve_is_measured_on_the_way(vit_dir, pixel_values):
    loaded = load_explainable_model(vit_dir)
    game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2])
    for curve in ("insertion", "deletion"):
        attribution = get_method("moxi").attribute(game, curve)
        measured = measure_curves(game, attribution.order, curve)
        torch.testing.assert_close(attribution.curve_probabilities, measured.probabilities, rtol=1e-5, atol=1e-6)
        assert torch.equal(attribution.curve_predictions, measured.predictions)


def test_early_stop_and_max_players(vit_dir, pixel_values):
    explainer = Explainer.from_pretrained(vit_dir)
    full = explainer.explain(pixel_values[0], method="moxi")
    stopped = explainer.explain(pixel_values[0], method="moxi", early_stop=True)
    assert stopped.order == full.order[: stopped.patches_needed]
    assert stopped.patches_needed == full.patches_needed
    assert stopped.heatmap == full.heatmap
    capped = explainer.explain(pixel_values[0], method="moxi", max_players=3)
    assert capped.order == full.order[:3]
    with pytest.raises(MoXIError, match="max_players"):
        explainer.explain(pixel_values[0], method="moxi", max_players=0)


def test_full_shapley_contexts_follow_the_sampling_rule():
    contexts = sample_contexts(6, 500, seed=0)
    assert contexts.shape == (6, 500, 6)
    assert not contexts[torch.arange(6), :, torch.arange(6)].any()  # never the player itself
    sizes = contexts.sum(dim=2)
    assert int(sizes.max()) <= 4 and int(sizes.min()) == 0  # ⌊(P − 1) r⌋ ≤ P − 2
    assert torch.equal(contexts, sample_contexts(6, 500, seed=0))
    assert not torch.equal(contexts, sample_contexts(6, 500, seed=1))


@pytest.mark.parametrize("sampler", ["permutation", "original", "exact"])
def test_full_shapley_is_exact_on_an_additive_game(sampler):
    attribution = get_method("full-shapley", num_samples=20, seed=3, sampler=sampler).attribute(
        ToyGame(additive, 6), "insertion")
    torch.testing.assert_close(attribution.scores[0], torch.tensor(WEIGHTS))
    assert attribution.order[0].tolist() == [1, 3, 4, 0, 5, 2]
    assert attribution.settings == {"sampler": sampler}


def test_full_shapley_on_a_unanimity_game_permutation_is_unbiased_and_original_is_not():
    # Unanimity game on T = {0, 1}: the Shapley value is 1/2 for both members. The original sampler
    # gives φ_i = P(the other member of T is in the context); with context sizes k uniform on
    # 0..P-2 and a uniform subset of the P-1 others: E[k] / (P-1) = (P-2)/2/(P-1).
    players = 5
    game = ToyGame(lambda s: float({0, 1} <= s), players)
    expected = {"permutation": 0.5, "exact": 0.5, "original": (players - 2) / 2 / (players - 1)}
    for sampler, value in expected.items():
        scores = get_method("full-shapley", num_samples=4000, seed=0, sampler=sampler).attribute(game, "insertion").scores[0]
        assert abs(float(scores[0]) - value) < 0.03 and abs(float(scores[1]) - value) < 0.03, sampler
        assert float(scores[2:].abs().max()) == 0.0


@pytest.mark.parametrize("sampler", ["permutation", "original"])
def test_full_shapley_is_reproducible_and_batch_independent(vit_dir, pixel_values, sampler):
    loaded = load_explainable_model(vit_dir)
    game = ValueFunction(loaded.adapter, pixel_values, [0, 1, 2])
    method = get_method("full-shapley", num_samples=8, seed=5, sampler=sampler)
    first = method.attribute(game, "insertion")
    again = method.attribute(game, "deletion")
    alone = method.attribute(ValueFunction(loaded.adapter, pixel_values[1:2], [1]), "insertion")
    assert torch.equal(first.order, again.order)
    torch.testing.assert_close(first.scores[1], alone.scores[0])
    other_seed = get_method("full-shapley", num_samples=8, seed=6, sampler=sampler).attribute(game, "insertion")
    assert not torch.equal(first.scores, other_seed.scores)


def test_heatmap_rule_on_hand_made_cases():
    order = torch.tensor([2, 0, 3, 1])
    # Insertion: predicted at k = 0..4; the label 7 is first predicted after 2 players.
    assert patches_needed(torch.tensor([1, 1, 7, 7, 7]), 7, "insertion", 4) == 2
    assert heatmap_from_order(order, 2, 4).tolist() == [1.0, 0.0, 2.0, 0.0]
    # Deletion: the label is lost after 3 players.
    assert patches_needed(torch.tensor([7, 7, 7, 2, 2]), 7, "deletion", 4) == 3
    assert heatmap_from_order(order, 3, 4).tolist() == [2.0, 0.0, 3.0, 1.0]
    # Never reached: all players needed, a full ramp.
    assert patches_needed(torch.tensor([1, 1, 1, 1, 1]), 7, "insertion", 4) == 4
    assert heatmap_from_order(order, 4, 4).tolist() == [3.0, 1.0, 4.0, 2.0]
    # k = 0 does not count: a change needs at least one player.
    assert patches_needed(torch.tensor([7, 1, 7, 7, 7]), 7, "insertion", 4) == 2


def test_curves_keep_and_drop_the_first_k_players():
    seen = []

    class Recording(ToyGame):
        def evaluate(self, coalitions, image_index=None):
            seen.append(coalitions.clone())
            return super().evaluate(coalitions, image_index)

    game = Recording(additive, 6)
    order = torch.tensor([[4, 0, 5, 1, 2, 3]])
    measure_curves(game, order, "insertion")
    measure_curves(game, order, "deletion")
    insertion, deletion = seen
    assert insertion.shape == (7, 6)
    for k in range(7):
        assert set(insertion[k].nonzero().flatten().tolist()) == set(order[0, :k].tolist())
        assert set(deletion[k].nonzero().flatten().tolist()) == set(range(6)) - set(order[0, :k].tolist())
    with pytest.raises(MoXIError, match="complete orders"):
        measure_curves(game, torch.tensor([[4, 0, 5, 1, 2, 2]]), "insertion")


def test_grouped_players_give_orders_over_the_coarse_grid(vit_dir, pixel_values):
    explainer = Explainer.from_pretrained(vit_dir, players_grid=2)
    for method in ("moxi", "self-shapley", "gradcam", "attention-rollout"):
        explanation = explainer.explain(pixel_values[0], method=method)
        assert sorted(explanation.order) == [0, 1, 2, 3]
        assert explanation.grid == (2, 2) and len(explanation.heatmap) == 2


def test_pixel_masking_end_to_end_on_a_tiny_resnet(resnet_dir):
    explainer = Explainer.from_pretrained(resnet_dir, pixel_grid=4)
    image = torch.randn(3, 32, 32)
    for method in ("moxi", "self-shapley", "gradcam", "gradcam++"):
        explanation = explainer.explain(image, method=method, curve="deletion")
        assert sorted(explanation.order) == list(range(16)) and explanation.masking == "pixel"
    with pytest.raises(MoXIError, match="attention-rollout needs a ViT"):
        explainer.explain(image, method="attention-rollout")


def test_gradcam_matches_a_plain_autograd_computation(vit_dir, pixel_values):
    stock = ViTForImageClassification.from_pretrained(vit_dir).eval()
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["a"] = output

    hook = stock.vit.layers[-1].layernorm_before.register_forward_hook(keep)
    logits = stock(pixel_values[:1]).logits
    hook.remove()
    label = int(logits.argmax())
    logits[0, label].backward()
    activations, gradients = captured["a"][0, 1:], captured["a"].grad[0, 1:]
    cam = torch.relu((activations * gradients.mean(dim=0)).sum(dim=1)).detach()

    explanation = Explainer.from_pretrained(vit_dir).explain(pixel_values[0], method="gradcam")
    torch.testing.assert_close(torch.tensor(explanation.scores), cam, rtol=1e-4, atol=1e-5)
    assert explanation.order == torch.sort(cam, descending=True, stable=True).indices.tolist()


def test_attention_rollout_matches_a_plain_computation(vit_dir):
    stock = ViTForImageClassification.from_pretrained(vit_dir, attn_implementation="eager").eval()
    bigger = torch.randn(1, 3, 24, 24)  # a 6×6 grid: rollout is not tied to one grid size
    with torch.no_grad():
        attentions = stock(bigger, interpolate_pos_encoding=True, output_attentions=True).attentions
    joint = torch.eye(37)
    for attention in attentions:
        layer = attention[0].mean(dim=0) + torch.eye(37)
        layer = layer / layer.sum(dim=-1, keepdim=True)
        joint = layer @ joint
    expected = joint[0, 1:]
    torch.testing.assert_close(rollout(attentions)[0, 0, 1:], expected)

    loaded = load_explainable_model(vit_dir)
    loaded.adapter.interpolate_pos_encoding = True
    loaded.adapter.grid = (6, 6)
    game = ValueFunction(loaded.adapter, bigger, [0])
    attribution = get_method("attention-rollout").attribute(game, "insertion")
    torch.testing.assert_close(attribution.scores[0], expected)
    assert loaded.model.config._attn_implementation == "sdpa"  # restored after the eager forward


@pytest.mark.parametrize("method", ["moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++",
                                    "attention-rollout"])
def test_every_method_runs_in_bfloat16(deit_teacher_dir, pixel_values, method):
    explainer = Explainer.from_pretrained(deit_teacher_dir, dtype="bfloat16")
    options = {"num_samples": 2} if method == "full-shapley" else {}
    explanation = explainer.explain(pixel_values[0], method=method, **options)
    assert sorted(explanation.order) == list(range(16))
    assert all(math.isfinite(p) for p in explanation.curve_probabilities)


def test_batched_explanations_equal_one_at_a_time(vit_dir, pixel_values):
    explainer = Explainer.from_pretrained(vit_dir)
    for method in ("moxi", "self-shapley"):
        batch = explainer.explain_batch(pixel_values, method=method, curve="deletion")
        for image, explanation in enumerate(batch):
            assert explanation.order == explainer.explain(pixel_values[image], method=method, curve="deletion").order


def test_orders_are_permutations_for_every_method_and_curve(deit_dir, pixel_values):
    explainer = Explainer.from_pretrained(deit_dir)
    for method, curve in itertools.product(["moxi", "self-shapley", "gradcam", "gradcam++", "attention-rollout"],
                                           ["insertion", "deletion"]):
        explanation = explainer.explain(pixel_values[1], method=method, curve=curve)
        assert sorted(explanation.order) == list(range(16))
        assert len(explanation.curve_probabilities) == 17
        heat = torch.tensor(explanation.heatmap).flatten()
        assert int((heat > 0).sum()) == explanation.patches_needed
