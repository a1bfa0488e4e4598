"""Interactions: planted pairwise games (exact), the four-term formula on a tiny ViT, the share, the figure."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

from moxi_hf import Explainer, MoXIError, get_method, load_explainable_model
from moxi_hf.explanation import Explanation
from moxi_hf.interactions import gain_split, interaction_share, pairwise_interactions
from moxi_hf.value import ValueOutput, reward_from_logits

N_PLAYERS = 6
# Planted terms: multiples of 1/4, so every sum and difference below is exact in float32.
SINGLE = torch.tensor([0.5, 3.0, -1.0, 0.25, 2.0, 0.0])
PAIR = torch.zeros(N_PLAYERS, N_PLAYERS)
for (i, j), value in {(0, 2): 4.0, (1, 3): -2.5, (2, 5): 1.5, (3, 4): 3.0, (0, 5): -0.75, (4, 5): 0.5}.items():
    PAIR[i, j] = PAIR[j, i] = value


def planted(subset: set[int]) -> float:
    """v(S) = Σ a_i [i ∈ S] + Σ b_ij [i, j ∈ S]."""
    pairs = sum(float(PAIR[i, j]) for i, j in itertools.combinations(sorted(subset), 2))
    return float(sum(float(SINGLE[i]) for i in subset)) + pairs


class PlantedGame:
    """The planted game, scaled by (1 + b) for image b so that images differ; records the size of each call."""

    def __init__(self, n_images: int = 1):
        self.n_players, self.n_images = N_PLAYERS, n_images
        self.labels = torch.zeros(n_images, dtype=torch.long)
        self.calls: list[int] = []

    def evaluate(self, coalitions, image_index=None):
        self.calls.append(coalitions.shape[0])
        index = torch.zeros(coalitions.shape[0], dtype=torch.long) if image_index is None else image_index
        values = torch.tensor([planted(set(row.nonzero().flatten().tolist())) * (1 + int(b))
                               for row, b in zip(coalitions, index)], dtype=torch.float32)
        return ValueOutput(values, (values <= 0).long(), torch.sigmoid(values))

    def __call__(self, coalitions, image_index=None):
        return self.evaluate(coalitions, image_index).values


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_the_matrix_equals_the_planted_pair_terms(curve):
    game = PlantedGame(n_images=2)
    order = torch.tensor([[4, 0, 5, 1, 2, 3], [2, 3, 0, 1, 5, 4]])
    maps = pairwise_interactions(game, order, curve, top_k=N_PLAYERS)
    assert game.calls == [2 * (1 + N_PLAYERS + 15)]  # one batched call: v(∅)/v(N), singles, pairs
    for image, found in enumerate(maps):
        assert torch.equal(found.players, order[image])
        expected = PAIR[order[image]][:, order[image]] * (1 + image)
        assert torch.equal(found.matrix, expected)


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_the_gain_split_recovers_the_planted_terms_along_the_greedy(curve):
    game = PlantedGame()
    attribution = get_method("moxi").attribute(game, curve)
    order = attribution.order[0]
    split = gain_split(attribution, curve)
    calls = len(game.calls)
    # self + interaction is the step's gain, exactly, and the gain is MoXI's score.
    assert torch.equal(split["self"] + split["interaction"], split["total"])
    assert torch.equal(split["total"][0], attribution.scores[0, order])
    # The split reuses the greedy's first step (every single) and v(∅)/v(N): no new call ...
    maps = pairwise_interactions(game, attribution.order, curve, top_k=N_PLAYERS,
                                 base_values=attribution.base_values, first_values=attribution.first_values)
    assert game.calls[calls:] == [15]  # ... and the map then only needs the pairs.
    matrix = maps[0].matrix
    assert torch.equal(matrix, PAIR[order][:, order])
    insertion = curve == "insertion"
    for k, player in enumerate(order.tolist()):
        # Insertion: v({i}) − v(∅) = a_i; deletion: v(N) − v(N ∖ {i}) = a_i + Σ_j b_ij.
        own = SINGLE[player] + (0 if insertion else PAIR[player].sum())
        assert float(split["self"][0, k]) == float(own)
        before = matrix[k, :k].sum()
        assert float(split["interaction"][0, k]) == float(before if insertion else -before)


def test_the_split_marks_steps_past_an_early_stop_and_the_map_is_capped():
    game = PlantedGame()
    attribution = get_method("moxi", early_stop=True).attribute(game, "deletion")
    length = int(attribution.lengths[0])
    assert 1 <= length < N_PLAYERS
    split = gain_split(attribution, "deletion")
    assert not split["total"][0, :length].isnan().any()
    maps = pairwise_interactions(game, attribution.order, "deletion", top_k=10, lengths=attribution.lengths)
    assert maps[0].players.tolist() == attribution.order[0, :length].tolist()
    with pytest.raises(MoXIError, match="MoXI greedy"):
        gain_split(get_method("self-shapley").attribute(game, "insertion"), "insertion")


def test_bad_arguments_are_named():
    game = PlantedGame()
    order = torch.arange(N_PLAYERS).unsqueeze(0)
    for top_k in (0, 2.5, True):
        with pytest.raises(MoXIError, match="top_k"):
            pairwise_interactions(game, order, "insertion", top_k=top_k)
    with pytest.raises(MoXIError, match="curve"):
        pairwise_interactions(game, order, "sideways")
    with pytest.raises(MoXIError, match="distinct players"):
        pairwise_interactions(game, torch.tensor([[0, 0, 1, 2, 3, 4]]), "insertion")
    with pytest.raises(MoXIError, match="rows"):
        pairwise_interactions(game, torch.arange(3), "insertion")


def test_interaction_share():
    gains = {"total": [2.0, 0.0, -1.0], "self": [2.0, -1.0, 0.5], "interaction": [0.0, 1.0, -1.5]}
    assert interaction_share(gains, 2) == pytest.approx(1.0 / 4.0)
    assert interaction_share(gains, 3) == pytest.approx(2.5 / 6.0)
    assert interaction_share(gains, 10) == interaction_share(gains, 3)  # at most the order
    assert math.isnan(interaction_share({"self": [0.0], "interaction": [0.0]}, 1))
    with pytest.raises(MoXIError, match="patches_needed"):
        interaction_share(gains, 0)


def model_value(model, pixel_values, explanation, touched: list[int]) -> float:
    """v(S) from one plain call of the model: S = ``touched`` (insertion) or all but ``touched`` (deletion)."""
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, touched] = True
    if explanation.curve == "deletion":
        mask = ~mask
    with torch.no_grad():
        logits = model(pixel_values.unsqueeze(0), embedding_mask=mask).logits
    return float(reward_from_logits(logits.float(), torch.tensor([explanation.label]), explanation.reward)[0])


@pytest.mark.parametrize("method", ["moxi", "self-shapley"])
@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_every_entry_on_a_tiny_vit_equals_the_four_term_formula(vit_dir, pixel_values, method, curve):
    explainer = Explainer.from_pretrained(vit_dir)
    model = load_explainable_model(vit_dir).model
    explanations = explainer.explain_batch(pixel_values, method=method, curve=curve, interactions=True,
                                           interaction_top=4)
    for image, explanation in enumerate(explanations):
        players = explanation.interactions["players"]
        matrix = np.asarray(explanation.interactions["matrix"])
        assert players == explanation.order[:4] and matrix.shape == (4, 4)
        v = functools.partial(model_value, model, pixel_values[image], explanation)
        for a, b in itertools.combinations(range(4), 2):
            i, j = players[a], players[b]
            expected = v([i, j]) - v([i]) - v([j]) + v([])
            assert matrix[a, b] == pytest.approx(expected, abs=1e-5)
            assert matrix[b, a] == matrix[a, b]
        assert np.all(np.diag(matrix) == 0)
        if method == "moxi":
            gains = explanation.gains
            assert len(gains["total"]) == len(explanation.order)
            np.testing.assert_allclose(np.add(gains["self"], gains["interaction"]), gains["total"], atol=1e-6)
            first = explanation.order[0]
            own = v([first]) - v([]) if curve == "insertion" else v([]) - v([first])
            assert gains["self"][0] == pytest.approx(own, abs=1e-5)
        else:
            assert explanation.gains is None


def test_the_fields_round_trip_and_the_figure_is_written(vit_dir, tmp_path):
    explainer = Explainer.from_pretrained(vit_dir)
    rng = np.random.default_rng(0)
    image = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(image)
    explanation = explainer.explain(image, method="moxi", curve="insertion", interactions=True, interaction_top=3)
    again = Explanation.from_json(explanation.to_json())
    assert again.interactions == explanation.interactions and again.gains == explanation.gains
    path = tmp_path / "interactions.png"
    figure = explanation.plot_interactions(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 3  # map, bars, p(label) axis
    plain = explainer.explain(image, method="moxi")
    assert plain.interactions is None and plain.gains is None
    with pytest.raises(MoXIError, match="interactions=True"):
        plain.plot_interactions(tmp_path / "none.png")
    baseline = explainer.explain(image, method="self-shapley", interactions=True)
    assert len(baseline.plot_interactions().axes) == 1  # no gains: the map only
