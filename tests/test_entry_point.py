"""Explainer.explain_methods (methods × curves on a batch), the methods' cost, applicability and the chunk callback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from moxi_hf import Explainer, MoXIError, PixelMasking, get_method
from moxi_hf.methods import METHODS
from moxi_hf.options import CURVES, METHOD_NAMES

ALL_METHODS = list(METHOD_NAMES)
FAST = {"full-shapley": {"num_samples": 3}}


@pytest.fixture(scope="module")
def explainer(vit_dir):
    return Explainer.from_pretrained(vit_dir)


def test_every_method_and_curve_equals_explaining_it_alone(explainer, pixel_values):
    batch = explainer.explain_methods(pixel_values, ALL_METHODS, CURVES, [1, None, 3], options=FAST)
    assert batch.methods == ALL_METHODS and batch.curves == list(CURVES) and len(batch) == 3
    predicted = explainer.predict(pixel_values).tolist()
    assert batch.labels == [1, predicted[1], 3] and batch.predicted == predicted
    for method in ALL_METHODS:
        for curve in CURVES:
            alone = explainer.explain_batch(pixel_values, method, curve, [1, None, 3], **FAST.get(method, {}))
            for got, want in zip(batch[(method, curve)], alone):
                got, want = got.to_dict(), want.to_dict()
                # measured with other methods' orders in the same forward passes: equal up to float rounding
                assert got.pop("curve_probabilities") == pytest.approx(want.pop("curve_probabilities"), abs=1e-6)
                assert got == want
        if not METHODS[method].depends_on_curve:  # one order, measured on both curves
            assert [e.order for e in batch[(method, "insertion")]] == [e.order for e in batch[(method, "deletion")]]


def test_a_curve_independent_method_runs_once_and_is_measured_on_every_curve(explainer, pixel_values):
    calls = []
    method = get_method("gradcam")
    original = method.attribute
    method.attribute = lambda game, curve: calls.append(curve) or original(game, curve)
    batch = explainer.explain_methods(pixel_values, [method], ["deletion", "insertion"])
    assert calls == ["deletion"]
    for curve in ("deletion", "insertion"):
        for explanation in batch[("gradcam", curve)]:
            assert explanation.curve == curve and len(explanation.curve_probabilities) == 17


def test_interactions_only_for_the_methods_asked(explainer, pixel_values):
    batch = explainer.explain_methods(pixel_values[:1], ["moxi", "self-shapley"], ["insertion"],
                                      interactions={"moxi"}, interaction_top=3)
    moxi, shapley = batch[("moxi", "insertion")][0], batch[("self-shapley", "insertion")][0]
    assert moxi.gains is not None and len(moxi.interactions["players"]) == 3
    assert shapley.gains is None and shapley.interactions is None


def test_an_early_stopped_order_keeps_the_curve_measured_on_its_way(explainer, pixel_values):
    stopped = explainer.explain_methods(pixel_values, ["moxi"], ["insertion"], options={"moxi": {"early_stop": True}})
    for explanation in stopped[("moxi", "insertion")]:
        assert len(explanation.curve_probabilities) == len(explanation.order) + 1 <= 17
        assert explanation.curve_predictions[-1] == explanation.label  # it stopped where the label was reached


@pytest.mark.parametrize("arguments, message", [
    ({"methods": []}, "non-empty list"),
    ({"methods": "moxi"}, "non-empty list"),
    ({"methods": ["moxi", "moxi"]}, "listed twice"),
    ({"methods": ["lime"]}, "unknown method 'lime'"),
    ({"curves": ["insertion", "insertion"]}, "without repeats"),
    ({"curves": ["sideways"]}, "unknown curve"),
    ({"labels": [0]}, "got 1 labels for 3 images"),
    ({"labels": [0, 5, 1]}, "label 5 is out of range"),
    ({"labels": [0, "1", 1]}, "must be an integer class index"),
])
def test_bad_requests_are_refused_before_any_work(explainer, pixel_values, arguments, message):
    with pytest.raises(MoXIError, match=message):
        explainer.explain_methods(pixel_values, **{"methods": ["moxi"], **arguments},
                                  on_chunk=lambda *counts: pytest.fail("a coalition was evaluated"))


def _counted(explainer, images, methods, curves, **kwargs) -> tuple[int, int]:
    seen = [0, 0]

    def on_chunk(coalitions, tokens):
        seen[0] += coalitions
        seen[1] += tokens

    explainer.explain_methods(images, methods, curves, on_chunk=on_chunk, **kwargs)
    return seen[0], seen[1]


@pytest.mark.parametrize("methods, curves, interactions", [
    (["moxi"], ["insertion"], False),
    (["moxi"], ["deletion"], True),
    (["self-shapley", "gradcam"], ["insertion", "deletion"], True),
    (["full-shapley", "attention-rollout"], ["deletion", "insertion"], False),
])
@pytest.mark.parametrize("players_grid", [None, 2])
def test_cost_is_what_the_callback_counts(vit_dir, pixel_values, methods, curves, interactions, players_grid):
    explainer = Explainer.from_pretrained(vit_dir, players_grid=players_grid)
    options = {"full-shapley": {"num_samples": 2, "seed": 5}}
    cost = explainer.cost(methods, curves, options=options, interactions=interactions, interaction_top=3)
    assert cost.exact
    coalitions, tokens = _counted(explainer, pixel_values, methods, curves, options=options,
                                  interactions=interactions, interaction_top=3)
    images = pixel_values.shape[0]
    assert (coalitions, tokens) == ((cost * images).coalitions, (cost * images).token_forwards(
        explainer.adapter, explainer.players))
    assert tokens > coalitions  # a coalition of k patches runs k + 1 tokens (CLS)


def test_cost_with_pixel_masking_counts_one_forward_per_coalition(resnet_dir):
    explainer = Explainer.from_pretrained(resnet_dir)
    images = torch.randn(2, 3, 32, 32)
    cost = explainer.cost(["moxi", "gradcam"], ["insertion"])
    coalitions, tokens = _counted(explainer, images, ["moxi", "gradcam"], ["insertion"])
    assert coalitions == tokens == 2 * cost.coalitions == 2 * cost.token_forwards(explainer.adapter, explainer.players)


def test_method_costs_by_size():
    moxi = get_method("moxi").cost(4, "insertion")
    assert dict(moxi.sizes) == {0: 1, 1: 4, 2: 3, 3: 2, 4: 1} and moxi.coalitions == 11
    assert dict(get_method("moxi").cost(4, "deletion").sizes) == {4: 1, 3: 4, 2: 3, 1: 2, 0: 1}
    assert not get_method("moxi", early_stop=True).cost(4, "insertion").exact
    assert dict(get_method("moxi", max_players=2).cost(4, "insertion").sizes) == {0: 1, 1: 4, 2: 3}
    assert dict(get_method("self-shapley").cost(4, "deletion").sizes) == {4: 1, 3: 4}
    assert get_method("full-shapley", num_samples=5, sampler="original").cost(4, "insertion").coalitions == 2 * 4 * 5
    assert dict(get_method("full-shapley", num_samples=5).cost(4, "insertion").sizes) == {0: 1, 1: 5, 2: 5, 3: 5, 4: 1}
    assert dict(get_method("full-shapley", sampler="exact").cost(4, "insertion").sizes) == {0: 1, 1: 4, 2: 6, 3: 4, 4: 1}
    assert get_method("gradcam").cost(4, "insertion").coalitions == 0


class _NoConvolution(torch.nn.Module):
    """A classifier with no 4-D feature map: a linear layer on the flattened pixels."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
        self.linear = torch.nn.Linear(3 * 16 * 16, 3)

    def forward(self, pixel_values, **kwargs):
        return SimpleNamespace(logits=self.linear(pixel_values.flatten(1)))


def _adapters(vit_dir, resnet_dir):
    torch.manual_seed(0)
    no_convolution = _NoConvolution().eval()
    return {
        "token": (Explainer.from_pretrained(vit_dir), torch.randn(1, 3, 16, 16)),
        "vit-pixel": (Explainer.from_pretrained(vit_dir, masking="pixel"), torch.randn(1, 3, 16, 16)),
        "resnet": (Explainer.from_pretrained(resnet_dir), torch.randn(1, 3, 32, 32)),
        "no-convolution": (Explainer(no_convolution, adapter=PixelMasking(no_convolution, (4, 4))),
                           torch.randn(1, 3, 16, 16)),
    }


def test_unsupported_reason_says_exactly_which_methods_run(vit_dir, resnet_dir):
    """No probe run is needed: a method runs on a model exactly when its unsupported_reason is None."""
    found = {}
    for kind, (explainer, images) in _adapters(vit_dir, resnet_dir).items():
        game = explainer.value_function(images, [0])
        for name in METHOD_NAMES:
            reason = explainer.unsupported_reason(name)
            try:
                get_method(name, **FAST.get(name, {})).attribute(game, "insertion")
            except MoXIError:
                runs = False
            else:
                runs = True
            assert runs == (reason is None), (kind, name, reason)
            if reason:
                assert reason.startswith(name)
        found[kind] = explainer.applicable_methods()
    assert found["token"] == found["vit-pixel"] + ["attention-rollout"] == ALL_METHODS
    assert found["resnet"] == ["moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++"]
    assert found["no-convolution"] == ["moxi", "self-shapley", "full-shapley"]


def test_an_unsupported_method_is_refused_before_any_work(resnet_dir):
    explainer = Explainer.from_pretrained(resnet_dir)
    with pytest.raises(MoXIError, match="^attention-rollout needs a ViT-family model"):
        explainer.explain_methods(torch.randn(1, 3, 32, 32), ["moxi", "attention-rollout"],
                                  on_chunk=lambda *counts: pytest.fail("a coalition was evaluated"))


def test_what_the_callback_raises_leaves_the_call_unchanged(explainer, pixel_values):
    class Stop(Exception):
        pass

    calls = []

    def stop_at_the_second_chunk(coalitions, tokens):
        calls.append((coalitions, tokens))
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        explainer.explain_methods(pixel_values, ["moxi"], on_chunk=stop_at_the_second_chunk)
    assert calls == [(3, 3), (48, 96)]  # v(∅) of 3 images (the CLS token alone), then 16 singletons each
    assert explainer.explain(pixel_values[0], "self-shapley").order  # the explainer is left as it was
