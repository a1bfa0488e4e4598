"""full-shapley against exact Shapley values enumerated here, on the shipped model's 7-player game.

The game: the shipped model (7×7 patches) with ``players_grid=(7, 1)``, so each player is one row
of patches and every one of the 2^7 coalitions can be evaluated. The exact Shapley values are the
mean marginal contribution over all 7! orders (plain loops, independent of the package's code).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from moxi_hf import Explainer, MoXIError, get_method
from moxi_hf.cli import main
from moxi_hf.evaluation import EvaluationConfig
from moxi_hf.methods.full_shapley import MAX_EXACT_PLAYERS

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist"
SAMPLES = sorted((MODEL_DIR / "samples").glob("digit_*.png"))
ROWS = (7, 1)  # 7 players: the rows of the 7×7 patch grid
P = 7
#: stated accuracy of the default estimator (200 permutations) on these games: mean |φ̂ − φ| per image, log-odds
DEFAULT_TOLERANCE = 0.1


class TableGame:
    """One image's game from a table of v over every coalition (bitmask index), without the model."""

    def __init__(self, values: torch.Tensor):
        self.values = values
        self.n_players = P
        self.n_images = 1
        self.labels = torch.zeros(1, dtype=torch.long)
        self.calls = 0

    def __call__(self, coalitions, image_index=None):
        self.calls += coalitions.shape[0]
        return self.values[(coalitions.long() << torch.arange(P)).sum(dim=1)].float()


def coalition_table(game) -> torch.Tensor:
    """v of every coalition of every image (B, 2^P) float64, row-indexed by bitmask, one coalition at a time."""
    table = torch.empty(game.n_images, 1 << P, dtype=torch.float64)
    for mask in range(1 << P):
        row = torch.tensor([[bool(mask >> i & 1) for i in range(P)]] * game.n_images)
        table[:, mask] = game(row, torch.arange(game.n_images)).double()
    return table


def brute_force_shapley(table: torch.Tensor) -> torch.Tensor:
    """Mean marginal contribution over all P! orders (B, P) float64."""
    shapley = torch.zeros(table.shape[0], P, dtype=torch.float64)
    for order in itertools.permutations(range(P)):
        before = 0
        for player in order:
            shapley[:, player] += table[:, before | 1 << player] - table[:, before]
            before |= 1 << player
    return shapley / math.factorial(P)


@pytest.fixture(scope="module")
def seven():
    """(explainer, value function of the 6 sample digits, table (6, 128), exact Shapley (6, 7))."""
    explainer = Explainer.from_pretrained(MODEL_DIR, players_grid=ROWS)
    pixel_values, _ = explainer.preprocess(SAMPLES)
    game = explainer.value_function(pixel_values, explainer.predict(pixel_values).tolist())
    assert game.n_players == P
    table = coalition_table(game)
    return explainer, game, table, brute_force_shapley(table)


def _rmse(table, exact, num_samples, seeds, sampler="permutation") -> float:
    errors = [(get_method("full-shapley", num_samples=num_samples, seed=seed, sampler=sampler)
               .attribute(TableGame(table[b]), "insertion").scores[0].double() - exact[b]).pow(2).mean()
              for b in range(table.shape[0]) for seed in seeds]
    return float(torch.stack(errors).mean().sqrt())


def test_exact_sampler_equals_brute_force(seven):
    _, game, _, exact = seven
    scores = get_method("full-shapley", sampler="exact").attribute(game, "insertion").scores.double()
    assert float((scores - exact).abs().max()) < 1e-5


def test_default_sampler_reaches_the_stated_tolerance_and_is_efficient(seven):
    _, game, table, exact = seven
    method = get_method("full-shapley")
    assert (method.sampler, method.num_samples) == ("permutation", 200)
    scores = method.attribute(game, "insertion").scores.double()
    assert float((scores - exact).abs().mean(dim=1).max()) < DEFAULT_TOLERANCE
    # efficiency: Σφ = v(N) − v(∅), for every image and any number of permutations (odd ones too)
    total = table[:, -1] - table[:, 0]
    torch.testing.assert_close(scores.sum(dim=1), total, atol=1e-5, rtol=0)
    for num_samples in (1, 3):
        one = get_method("full-shapley", num_samples=num_samples, seed=7).attribute(TableGame(table[0]), "insertion")
        assert abs(float(one.scores[0].double().sum()) - float(total[0])) < 1e-5


def test_permutation_error_shrinks_like_one_over_sqrt_m(seven):
    _, _, table, exact = seven
    # 16 times more permutations: the root-mean-square error falls by √16 = 4 (20 seeds × 6 images)
    ratio = _rmse(table, exact, 16, range(20)) / _rmse(table, exact, 256, range(20))
    assert 3.2 < ratio < 4.8, ratio


def test_original_sampler_converges_to_its_own_weights_not_to_shapley(seven):
    _, _, table, exact = seven
    # the original sampler's limit: context sizes uniform on 0..P−2, a uniform subset of that size
    limit = torch.zeros_like(exact)
    for player in range(P):
        others = [i for i in range(P) if i != player]
        for size in range(P - 1):
            subsets = list(itertools.combinations(others, size))
            for subset in subsets:
                mask = sum(1 << i for i in subset)
                limit[:, player] += (table[:, mask | 1 << player] - table[:, mask]) / (P - 1) / len(subsets)
    original = torch.stack([get_method("full-shapley", num_samples=4000, sampler="original")
                            .attribute(TableGame(table[b]), "insertion").scores[0].double() for b in range(2)])
    assert float((original - limit[:2]).abs().mean()) < 0.02
    assert float((limit - exact).abs().mean()) > 0.05  # the bias the permutation sampler does not have


#: the orders full-shapley gave before the sampler option existed (49 players, num_samples=8, seed=0)
PREVIOUS_ORDERS = {
    "digit_2_1003.png": [38, 40, 39, 46, 15, 31, 32, 9, 21, 37, 7, 23, 47, 30, 25, 14, 26, 28, 8, 27, 2, 33, 17, 6,
                         35, 48, 4, 1, 44, 12, 3, 42, 22, 0, 41, 5, 29, 13, 34, 36, 10, 19, 45, 43, 11, 20, 16, 24, 18],
    "digit_3_1502.png": [38, 24, 10, 17, 32, 25, 8, 9, 18, 15, 30, 16, 43, 5, 7, 28, 1, 26, 35, 22, 42, 46, 39, 3, 6,
                         48, 45, 31, 21, 13, 0, 47, 2, 20, 11, 37, 34, 29, 4, 14, 40, 44, 19, 36, 41, 27, 12, 23, 33],
}
#: and its scores on the 7-player game (num_samples=200, seed=0), as float.hex
PREVIOUS_SEVEN = {
    "digit_2_1003.png": ["0x1.28aecc0000000p-3", "-0x1.585bda0000000p-3", "-0x1.0d5c6a0000000p-2",
                         "0x1.455f920000000p-2", "0x1.1247d00000000p+0", "0x1.be7dca0000000p+1", "0x1.dd90740000000p-1"],
    "digit_3_1502.png": ["0x1.90c6c20000000p-5", "0x1.704c860000000p+1", "0x1.e322b00000000p-1",
                         "0x1.709ba60000000p+0", "0x1.1edbc00000000p-2", "0x1.1cdcb60000000p+0", "0x1.fe2d660000000p-3"],
}


def test_original_sampler_gives_the_previous_orders(seven):
    explainer = Explainer.from_pretrained(MODEL_DIR)
    images = [MODEL_DIR / "samples" / name for name in PREVIOUS_ORDERS]
    for explanation, order in zip(explainer.explain_batch(images, "full-shapley", num_samples=8, sampler="original"),
                                  PREVIOUS_ORDERS.values()):
        assert explanation.order == order
    found = seven[0].explain_batch(images, "full-shapley", num_samples=200, sampler="original")
    for explanation, scores in zip(found, PREVIOUS_SEVEN.values()):
        expected = torch.tensor([float.fromhex(score) for score in scores])
        torch.testing.assert_close(torch.tensor(explanation.scores), expected, atol=1e-6, rtol=0)
        assert explanation.order == torch.sort(expected, descending=True, stable=True).indices.tolist()


@pytest.mark.parametrize("sampler", ["permutation", "original", "exact"])
def test_value_calls_are_what_the_sampler_evaluates(seven, sampler):
    _, _, table, _ = seven
    game = TableGame(table[0])
    method = get_method("full-shapley", num_samples=6, sampler=sampler)
    method.attribute(game, "insertion")
    expected = {"permutation": 6 * 6 + 2, "original": 2 * 7 * 6, "exact": 128}[sampler]
    assert game.calls == method.cost(P, "insertion").coalitions == expected


def test_exact_and_bad_samplers_are_refused_with_one_line(tmp_path, capsys):
    explainer = Explainer.from_pretrained(MODEL_DIR)  # 49 players
    with pytest.raises(MoXIError, match=f"limited to {MAX_EXACT_PLAYERS} players"):
        explainer.explain(SAMPLES[0], method="full-shapley", sampler="exact")
    with pytest.raises(MoXIError, match="unknown sampler 'kernel'; choose one of permutation, original, exact"):
        get_method("full-shapley", sampler="kernel")
    with pytest.raises(MoXIError, match="num_samples must be an integer of at least 1"):
        get_method("full-shapley", num_samples=0)
    with pytest.raises(MoXIError, match="unknown sampler 'kernel'"):  # an evaluation refuses it before any work
        EvaluationConfig(output_dir=str(tmp_path / "evaluation"), sampler="kernel").validate()
    capsys.readouterr()
    code = main(["explain", "--quiet", "--image", str(SAMPLES[0]), "--method", "full-shapley", "--sampler", "exact",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("moxi: error: sampler 'exact' evaluates all 2^49"), err


def test_cli_sampler_flag_is_used_and_recorded(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", "--quiet", "--image", str(SAMPLES[0]), "--method", "full-shapley", "--sampler", "exact",
                 "--players-grid", "1", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    explanation = json.loads((out / SAMPLES[0].stem / "explanation.json").read_text())
    assert explanation["options"]["sampler"] == "exact" and explanation["settings"] == {"sampler": "exact"}
    assert json.loads((out / "config.json").read_text())["method_settings"] == {"full-shapley": {"sampler": "exact"}}
    # one player: its Shapley value is v(N) − v(∅)
    explainer = Explainer.from_pretrained(MODEL_DIR, players_grid=1)
    pixel_values, _ = explainer.preprocess([SAMPLES[0]])
    game = explainer.value_function(pixel_values, [explanation["label"]])
    both = game(torch.tensor([[False], [True]]))
    assert explanation["scores"] == pytest.approx([float(both[1] - both[0])], abs=1e-6)


@pytest.mark.parametrize("rows_per_call", [50, 300])  # one image's coalitions split; two images per call
def test_results_do_not_depend_on_how_coalitions_are_split_into_calls(seven, monkeypatch, rows_per_call):
    _, game, _, exact = seven
    from moxi_hf.methods import full_shapley

    monkeypatch.setattr(full_shapley, "_ROWS_PER_CALL", rows_per_call)
    split_exact = get_method("full-shapley", sampler="exact").attribute(game, "insertion").scores
    split = get_method("full-shapley", num_samples=10).attribute(game, "insertion").scores
    monkeypatch.undo()
    whole = get_method("full-shapley", num_samples=10).attribute(game, "insertion").scores
    assert float((split_exact.double() - exact).abs().max()) < 1e-5
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=0)
