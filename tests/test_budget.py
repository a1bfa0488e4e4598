"""MoXI's budget: the budgeted greedy's schedule, its validation, token counting and the gain split on its orders."""

from __future__ import annotations

import pytest
import torch

from moxi_hf import Explainer, MoXIError, ValueFunction, get_method, load_explainable_model
from moxi_hf.interactions import gain_split, pairwise_interactions
from moxi_hf.methods.moxi import MoXI
from moxi_hf.options import BUDGETS, resolve_budget
from moxi_hf.value import ValueOutput


class CountingGame:
    """v(S) from a Python set function; records every coalition it is asked for. The label is class 0,
    predicted while v(S) > 0 (class 1 otherwise)."""

    def __init__(self, value, n_players: int):
        self.value = value
        self.n_players = n_players
        self.n_images = 1
        self.labels = torch.zeros(1, dtype=torch.long)
        self.asked: list[frozenset] = []

    def evaluate(self, coalitions, image_index=None):
        subsets = [frozenset(row.nonzero().flatten().tolist()) for row in coalitions]
        self.asked += subsets
        values = torch.tensor([self.value(subset) for subset in subsets], dtype=torch.float32)
        return ValueOutput(values, (values <= 0).long(), torch.sigmoid(values))

    def __call__(self, coalitions, image_index=None):
        return self.evaluate(coalitions, image_index).values


WEIGHTS = [0.5, 3.0, -1.0, 2.5, 2.0, 0.0, 1.5, -0.5]


def additive(subset):
    return float(sum(WEIGHTS[i] for i in subset))


PAIR_WEIGHTS = [0.5, 3.0, -1.0, 2.5, 2.0, 1.0, 1.5, -3.0]


def late_pair(subset):
    """Player 7 is the worst alone (-3) but worth 7 once player 5 is in: only a fresh evaluation of 7 sees it."""
    return float(sum(PAIR_WEIGHTS[i] for i in subset)) + (10.0 if {5, 7} <= subset else 0.0)


def budgeted(candidates: int, refresh: int, warmup: int = 0) -> MoXI:
    return MoXI(budget="fast", candidates=candidates, refresh=refresh, warmup=warmup)


@pytest.mark.parametrize("curve, coalitions", [
    # v(∅), 8 players at step 0 (the label is reached there), then 2 per step until only 2 are left
    ("insertion", 1 + 8 + 2 * 5 + 2 + 1),
    # v(N), every player at steps 0-3 (the label is lost at step 3: v drops from 0.5 to -1), then 2
    ("deletion", 1 + (8 + 7 + 6 + 5) + 2 * 2 + 2 + 1),
])
def test_additive_game_budget_keeps_the_exact_order_with_fewer_coalitions(curve, coalitions):
    # Gains of an additive game never change, so the best gain measured earlier is still the best.
    exact_game, budget_game = CountingGame(additive, 8), CountingGame(additive, 8)
    exact = MoXI().attribute(exact_game, curve)
    cheap = budgeted(2, 100).attribute(budget_game, curve)
    assert torch.equal(cheap.order, exact.order)
    torch.testing.assert_close(cheap.scores, exact.scores)
    assert len(budget_game.asked) == coalitions
    assert len(exact_game.asked) == 1 + sum(range(1, 9))


def test_refresh_finds_a_player_whose_gain_grew_and_candidates_alone_do_not():
    exact = MoXI().attribute(CountingGame(late_pair, 8), "insertion").order[0].tolist()
    assert exact == [1, 3, 4, 6, 5, 7, 0, 2]  # 7 right after its partner 5
    stale = budgeted(2, 100).attribute(CountingGame(late_pair, 8), "insertion").order[0].tolist()
    assert stale == [1, 3, 4, 6, 5, 0, 7, 2]  # 7 scored worst at step 0: not a candidate at step 5
    refreshed = budgeted(2, 5).attribute(CountingGame(late_pair, 8), "insertion").order[0].tolist()
    assert refreshed == exact  # step 5 evaluates every remaining player


@pytest.mark.parametrize("refresh, warmup, per_step", [
    (3, 0, [8, 2, 2, 5, 2, 2, 2, 1]),  # every player at steps 0 and 3 (and 6, where 2 are left)
    (100, 3, [8, 7, 6, 2, 2, 2, 2, 1]),  # every player at steps 0-2
])
def test_schedule_evaluates_every_player_at_the_start_and_every_refresh_steps(refresh, warmup, per_step):
    game = CountingGame(additive, 8)
    budgeted(2, refresh, warmup).attribute(game, "insertion")  # the label is reached at step 0
    sizes = [len(subset) for subset in game.asked]
    assert [sizes.count(size) for size in range(1, 9)] == per_step  # coalitions of size k + 1 are step k's


@pytest.mark.parametrize("curve, label_step", [("insertion", 0), ("deletion", 3)])
def test_step_coalitions_say_beforehand_what_a_run_evaluates(curve, label_step):
    for method in (MoXI(), budgeted(2, 3), budgeted(2, 100, 2), budgeted(3, 4, 1)):
        game = CountingGame(additive, 8)
        method.attribute(game, curve)
        sizes = [len(subset) for subset in game.asked[1:]]
        step_sizes = range(1, 9) if curve == "insertion" else range(7, -1, -1)
        assert [sizes.count(size) for size in step_sizes] == method.step_coalitions(8, label_step)
    assert MoXI().step_coalitions(8) == list(range(8, 0, -1))
    assert budgeted(2, 100).step_coalitions(8) == MoXI().step_coalitions(8)  # the label never changes


def test_every_player_is_evaluated_until_the_label_is_reached():
    never = CountingGame(lambda subset: -1.0 - len(subset), 8)  # v < 0 everywhere: the label is never reached
    budgeted(2, 100).attribute(never, "insertion")
    assert len(never.asked) == 1 + sum(range(1, 9))  # as many as the exact greedy


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_budget_is_the_exact_greedy_up_to_the_patches_needed(vit_dir, curve):
    explainer = Explainer.from_pretrained(vit_dir)
    torch.manual_seed(7)
    images = torch.randn(4, 3, 16, 16)
    exact = explainer.explain_batch(images, curve=curve)
    fast = explainer.explain_batch(images, curve=curve, budget="fast", candidates=1, refresh=100, warmup=0)
    for ours, reference in zip(fast, exact):
        needed = reference.patches_needed
        assert ours.patches_needed == needed and ours.heatmap == reference.heatmap
        assert ours.order[:needed] == reference.order[:needed]
    assert any(ours.order != reference.order for ours, reference in zip(fast, exact))  # the budget did act


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_refresh_one_or_candidates_covering_every_player_is_the_exact_greedy(vit_dir, pixel_values, curve):
    game = ValueFunction(load_explainable_model(vit_dir).adapter, pixel_values, [0, 3, 4])
    exact = MoXI().attribute(game, curve)
    for method in (budgeted(3, 1), budgeted(game.n_players, 50)):
        same = method.attribute(game, curve)
        assert torch.equal(same.order, exact.order)
        assert torch.equal(same.scores, exact.scores)


def test_token_forwards_are_counted_exactly(vit_dir, pixel_values):
    game = ValueFunction(load_explainable_model(vit_dir).adapter, pixel_values[:1], [0])
    n = game.n_players
    MoXI().attribute(game, "insertion")
    # v(∅) is the CLS token alone; step t evaluates n − t sequences of t + 1 patches plus CLS
    assert game.tokens == 1 + sum((n - t) * (t + 2) for t in range(n))
    assert game.calls == 1 + sum(n - t for t in range(n))
    deletion = ValueFunction(load_explainable_model(vit_dir).adapter, pixel_values[:1], [0])
    MoXI().attribute(deletion, "deletion")
    assert deletion.tokens == (n + 1) + sum((n - t) * (n - t) for t in range(n))


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_gain_split_and_interactions_use_the_values_the_budget_measured(vit_dir, pixel_values, curve):
    game = ValueFunction(load_explainable_model(vit_dir).adapter, pixel_values, [0, 3, 4])
    attribution = budgeted(2, 4).attribute(game, curve)
    split = gain_split(attribution, curve)
    rows = torch.arange(3).unsqueeze(1)
    torch.testing.assert_close(split["total"], attribution.scores[rows, attribution.order])
    # step 0 evaluated every player: the first values are v({i}) / v(N ∖ {i}) of all of them
    everyone = torch.eye(game.n_players, dtype=torch.bool).repeat(3, 1)
    owner = torch.arange(3).repeat_interleave(game.n_players)
    direct = game(everyone if curve == "insertion" else ~everyone, owner).view(3, -1)
    torch.testing.assert_close(attribution.first_values, direct)
    # the curve values are the greedy's own measurements along its order
    alone = game(torch.zeros(3, game.n_players, dtype=torch.bool) if curve == "insertion"
                 else torch.ones(3, game.n_players, dtype=torch.bool), torch.arange(3))
    torch.testing.assert_close(attribution.step_values[:, 0], alone)
    maps = pairwise_interactions(game, attribution.order, curve, 4, base_values=attribution.base_values,
                                 first_values=attribution.first_values)
    assert all(found.matrix.shape == (4, 4) and torch.isfinite(found.matrix).all() for found in maps)


@pytest.mark.parametrize("options, message", [
    ({"budget": "fast", "candidates": 0}, "candidates must be a positive integer"),
    ({"budget": "fast", "refresh": 0}, "refresh must be a positive integer"),
    ({"budget": "fast", "candidates": 2.5}, "candidates must be a positive integer"),
    ({"budget": "slow"}, "unknown budget 'slow'"),
    ({"budget": "fast", "warmup": -1}, "warmup must be an integer of at least 0"),
    ({"candidates": 10}, "apply to budget 'fast'"),
    ({"refresh": 4}, "apply to budget 'fast'"),
    ({"warmup": 0}, "apply to budget 'fast'"),
    ({"budget": "fast", "early_stop": True}, "cannot be combined with early_stop"),
])
def test_bad_budget_options_are_refused(options, message):
    with pytest.raises(MoXIError, match=message):
        get_method("moxi", **options)


def test_fast_fills_in_its_preset_and_explanations_record_it(vit_dir, pixel_values):
    assert resolve_budget("exact") == (None, None, None)
    preset = BUDGETS["fast"]
    assert resolve_budget("fast") == (preset["candidates"], preset["refresh"], preset["warmup"])
    assert resolve_budget("fast", refresh=3, warmup=0) == (preset["candidates"], 3, 0)
    explanation = Explainer.from_pretrained(vit_dir).explain(pixel_values[0], budget="fast", candidates=3)
    assert explanation.options["budget"] == "fast"
    assert [explanation.options[name] for name in ("candidates", "refresh", "warmup")] == \
        [3, preset["refresh"], preset["warmup"]]
    assert sorted(explanation.order) == list(range(16))
