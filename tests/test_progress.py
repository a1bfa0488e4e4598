"""Progress in token-forwards: totals known beforehand, a bar that reaches them, the slow-run line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from moxi_hf import Explainer, ValueFunction, load_explainable_model
from moxi_hf.cli import main
from moxi_hf.cost import Cost
from moxi_hf.methods.moxi import MoXI
from moxi_hf.progress import WorkBar, estimate_seconds, faster_choices, format_duration, slow_run_note, token_rate


class Reported:
    """An ``on_chunk`` callback that adds up what the value function reports."""

    def __init__(self):
        self.coalitions = self.tokens = 0

    def __call__(self, coalitions, tokens):
        self.coalitions += coalitions
        self.tokens += tokens


@pytest.mark.parametrize("masking", ["token", "pixel"])
def test_the_bar_reaches_the_total_the_cost_gave_beforehand(vit_dir, pixel_values, masking):
    explainer = Explainer.from_pretrained(vit_dir, masking=masking)
    methods, curves = ["moxi", "self-shapley"], ["insertion", "deletion"]
    cost = explainer.cost(methods, curves, interactions=True, interaction_top=3)
    total = cost.token_forwards(explainer.adapter, explainer.players) * pixel_values.shape[0]
    reported = Reported()
    bar = WorkBar(total, "test", disable=True, then=reported)
    explainer.explain_methods(pixel_values, methods, curves, interactions=True, interaction_top=3, on_chunk=bar)
    bar.close()
    assert bar.done == reported.tokens == total and bar.total == total
    assert reported.coalitions == cost.coalitions * pixel_values.shape[0]


def test_the_built_in_bar_counts_the_interaction_maps_too(vit_dir, pixel_values, monkeypatch):
    bars = []

    class Recorded(WorkBar):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr("moxi_hf.explainer.WorkBar", Recorded)
    explainer = Explainer.from_pretrained(vit_dir)
    explainer.explain_methods(pixel_values, ["moxi"], ["insertion"], interactions=True, interaction_top=3,
                              progress=True)
    (bar,) = bars
    assert bar.done == bar.total == bar.bar.n > 0  # every chunk counted before the bar closed


def test_a_low_total_grows_with_the_work():
    bar = WorkBar(10, "test", disable=True)
    for tokens in (6, 6, 6):
        bar(1, tokens)
    bar.close()
    assert bar.done == 18 and bar.total == 18


@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_budgeted_cost_at_the_label_step_is_what_the_greedy_evaluates(vit_dir, pixel_values, curve):
    adapter = load_explainable_model(vit_dir).adapter
    for image in range(pixel_values.shape[0]):
        game = ValueFunction(adapter, pixel_values[image : image + 1], [image % 3])
        method = MoXI(budget="fast", candidates=2, refresh=5, warmup=1)
        result = method.attribute(game, curve)
        hits = (result.curve_predictions[0, 1:] == image % 3).tolist()
        changed = [hit if curve == "insertion" else not hit for hit in hits]
        label_step = changed.index(True) if True in changed else game.n_players  # never
        cost = method.cost(game.n_players, curve, label_step)
        assert cost.coalitions == game.calls and not cost.exact
        assert cost.token_forwards(adapter, game.players) == game.tokens
    # Before the run: the label assumed to change within the warm-up, the least work; never: the exact cost.
    n = game.n_players
    assert method.cost(n, curve).coalitions <= method.cost(n, curve, n).coalitions == MoXI().cost(n, curve).coalitions


def test_estimate_and_slow_run_line(vit_dir):
    explainer = Explainer.from_pretrained(vit_dir)
    cost = explainer.cost(["moxi"], ["deletion"])
    assert token_rate(explainer, cost, min_seconds=0.05) > 0
    seconds, tokens = estimate_seconds(explainer, cost, 3)
    assert seconds > 0 and tokens == 3 * cost.token_forwards(explainer.adapter, explainer.players)
    assert estimate_seconds(explainer, None, 3) is None and estimate_seconds(explainer, Cost(), 3) is None
    assert [format_duration(s) for s in (40, 1380, 9000)] == ["about 40 s", "about 23 min", "about 2.5 h"]
    choices = faster_choices(explainer, {}, early_stop=True)
    assert choices[0].startswith("--budget fast") and choices[1].startswith("--early-stop")
    assert "--dtype bfloat16" in choices and "a GPU (--device cuda)" in choices
    assert not any("--players-grid" in choice for choice in choices)  # 16 players already
    assert not any("budget" in choice for choice in faster_choices(explainer, {"budget": "fast"}))
    line = slow_run_note("moxi explain", 1380, 123456, 2, choices, exact=True)
    assert line.startswith("moxi explain: this run is estimated at about 23 min on this machine: 123,456 ")
    assert "; faster: --budget fast" in line


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "images" / "noise.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_explain_prints_the_estimate_only_above_the_threshold(vit_dir, image_file, tmp_path, capsys, monkeypatch):
    args = ["explain", "--model", str(vit_dir), "--image", str(image_file), "--curve", "deletion"]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 0
    assert "estimated" not in capsys.readouterr().err  # a tiny run: seconds
    monkeypatch.setattr("moxi_hf.progress.SLOW_RUN_SECONDS", 0.0)
    assert main([*args, "--output-dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "moxi explain: this run is estimated at about" in err and "faster: --budget fast" in err
    assert main([*args, "--output-dir", str(tmp_path / "c"), "--budget", "fast"]) == 0
    err = capsys.readouterr().err
    assert "an estimate" in err and "--budget fast" not in err and "--early-stop" not in err
    recorded = json.loads((tmp_path / "c" / "config.json").read_text())["method_options"]
    assert recorded == {"moxi": {"budget": "fast", "candidates": 5, "refresh": 16, "warmup": 8}}  # the preset, named
    assert main([*args, "--output-dir", str(tmp_path / "d"), "--quiet"]) == 0
    assert "estimated" not in capsys.readouterr().err
