"""Explainer.game: the shipped model's game as a shapiq.Game, checked against shapiq's exact computer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import shapiq
import torch

from moxi_hf import Explainer, MoXIError
from moxi_hf.interactions import pairwise_interactions

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist"
SAMPLE = MODEL_DIR / "samples" / "digit_3_1502.png"
P = 7


@pytest.fixture(scope="module")
def explainer():
    return Explainer.from_pretrained(MODEL_DIR, players_grid=(7, 1))  # 7 players: the rows of patches


def test_shapiq_exact_values_equal_ours(explainer):
    game = explainer.game(SAMPLE)
    assert isinstance(game, shapiq.Game) and game.n_players == P
    exact = shapiq.ExactComputer(game=game, n_players=P)
    shapley, moebius = exact("SV"), exact("Moebius")

    ours = explainer.explain(SAMPLE, method="full-shapley", sampler="exact")
    assert [shapley[(i,)] for i in range(P)] == pytest.approx(ours.scores, abs=1e-5)
    # self-context Shapley (insertion) = the order-1 Möbius coefficients v({i}) − v(∅)
    alone = explainer.explain(SAMPLE, method="self-shapley")
    assert [moebius[(i,)] for i in range(P)] == pytest.approx(alone.scores, abs=1e-5)
    # the interaction map (insertion) = the order-2 Möbius coefficients
    pixel_values, _ = explainer.preprocess([SAMPLE])
    values = explainer.value_function(pixel_values, [ours.label])
    found = pairwise_interactions(values, torch.arange(P).unsqueeze(0), "insertion", top_k=P)[0]
    for i in range(P):
        for j in range(i + 1, P):
            assert moebius[(i, j)] == pytest.approx(float(found.matrix[i, j]), abs=1e-5)


def test_game_values_are_centred_and_follow_the_label(explainer):
    pixel_values, _ = explainer.preprocess([SAMPLE])
    coalitions = torch.tensor([[False] * P, [True] * P, [True, False, True, False, True, False, True]])
    for label in (None, 8):
        target = int(explainer.predict(pixel_values)[0]) if label is None else label
        v = explainer.value_function(pixel_values, [target])(coalitions).double()
        game = explainer.game(SAMPLE, label=label)
        assert game.normalization_value == pytest.approx(float(v[0]))
        assert game(coalitions.numpy()).tolist() == pytest.approx((v - v[0]).tolist(), abs=1e-6)
        assert game.value_function(coalitions.numpy()).tolist() == pytest.approx(v.tolist(), abs=1e-6)
    same = explainer.game(pixel_values[0])  # processed pixel values work too
    assert same.normalization_value == pytest.approx(explainer.game(SAMPLE).normalization_value)


def test_a_shapiq_approximator_runs_on_the_game(explainer):
    game = explainer.game(SAMPLE)
    # with a budget of every coalition, KernelSHAPIQ's k-SII is the exact one
    estimate = shapiq.KernelSHAPIQ(n=P, max_order=2, index="k-SII", random_state=0).approximate(budget=2**P, game=game)
    exact = shapiq.ExactComputer(game=game, n_players=P)("k-SII", 2)
    assert max(abs(estimate[key] - exact[key]) for key in exact.interaction_lookup) < 1e-4


def test_bad_label_and_missing_shapiq_are_one_line_errors(explainer, monkeypatch):
    with pytest.raises(MoXIError, match="label 10 is out of range"):
        explainer.game(SAMPLE, label=10)
    monkeypatch.setitem(sys.modules, "shapiq", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "moxi_hf.shapiq_game", raising=False)
    with pytest.raises(MoXIError, match=r"pip install 'moxi-hf\[shapiq\]'"):
        explainer.game(SAMPLE)
