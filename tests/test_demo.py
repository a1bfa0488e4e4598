"""The web demo: its plain functions against Explainer.explain, cancelling, concurrency and the page's handlers.

The page itself, in a browser: test_demo_browser.py.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moxi_hf import Explainer, MoXIError
from moxi_hf.defaults import default_model_path, default_sample_images
from moxi_hf.demo import Cancelled, DemoModel, check_image, load_demo_model
from moxi_hf.demo.core import DEFAULT_MODEL_NOTE, MAX_IMAGE_SIDE, Upload, grid_choices, label_choices

ROOT = Path(__file__).resolve().parents[1]


def _digit(seed: int = 0, size: int = 16) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _same(a, b) -> None:
    assert a.order == b.order
    assert a.patches_needed == b.patches_needed
    assert a.label == b.label and a.predicted == b.predicted
    assert a.heatmap == b.heatmap
    assert np.allclose(a.curve_probabilities, b.curve_probabilities, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(vit_dir):
    return DemoModel(Explainer.from_pretrained(vit_dir))


@pytest.mark.parametrize("method", ["moxi", "gradcam", "attention-rollout"])
@pytest.mark.parametrize("curve", ["insertion", "deletion"])
def test_explain_equals_explainer(tiny, vit_dir, method, curve):
    image = _digit(1)
    result = tiny.explain(image, method, curve)
    _same(result.explanation, Explainer.from_pretrained(vit_dir).explain(image, method, curve))
    assert json.loads(Path(result.json_path).read_text()) == result.explanation.to_dict()
    assert result.heatmap.size[0] > 100 and result.curve.size[0] > 100
    if curve == "insertion":
        assert result.needed_text.startswith(f"{result.explanation.patches_needed} of 16 patches")


def test_label_reward_and_grid_equal_explainer(tiny, vit_dir):
    image = _digit(2)
    result = tiny.explain(image, "self-shapley", "insertion", label=3, reward="log-prob", players_grid=2)
    expected = Explainer.from_pretrained(vit_dir, reward="log-prob", players_grid=2).explain(
        image, "self-shapley", "insertion", label=3)
    _same(result.explanation, expected)
    assert result.explanation.grid == (2, 2) and result.explanation.label == 3
    assert tiny.explainer_for("log-prob", 2) is tiny.explainer_for("log-prob", 2)  # built once
    assert tiny.explainer_for("log-prob", 2).model is tiny.explainer.model  # the model is shared


def test_moxi_shows_its_interactions_and_the_json_keeps_them(tiny, vit_dir):
    image = _digit(11)
    result = tiny.explain(image, "moxi")
    expected = Explainer.from_pretrained(vit_dir).explain(image, "moxi", interactions=True)
    assert result.explanation.interactions == expected.interactions and result.explanation.gains == expected.gains
    assert result.interactions is not None and result.interactions.size[0] > 300
    saved = json.loads(Path(result.json_path).read_text())
    assert saved["interactions"]["players"] == expected.interactions["players"]
    assert saved["gains"]["self"] == pytest.approx(expected.gains["self"])
    other = tiny.explain(image, "gradcam")
    assert other.interactions is None and json.loads(Path(other.json_path).read_text())["interactions"] is None


def test_pictures_come_from_the_library(tiny, tmp_path):
    from moxi_hf.demo.figures import to_image
    from moxi_hf.plotting import plot_explanation, plot_explanation_curve

    result = tiny.explain(_digit(14), "self-shapley")
    explanation = result.explanation
    assert explanation.display_image is not None  # the heatmap is drawn over the model's view
    assert np.array_equal(np.asarray(result.heatmap), np.asarray(to_image(plot_explanation(explanation))))
    assert np.array_equal(np.asarray(result.curve), np.asarray(to_image(plot_explanation_curve(explanation))))
    explanation.plot(tmp_path / "heatmap.png")  # the page shows the very picture `moxi explain` saves
    assert np.array_equal(np.asarray(result.heatmap), np.asarray(Image.open(tmp_path / "heatmap.png").convert("RGB")))


def test_choices(tiny):
    assert tiny.methods == ["moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++", "attention-rollout"]
    assert grid_choices(tiny.explainer) == [2]  # 4x4 patches
    assert label_choices(tiny.explainer.label_names())[:2] == [('0 ("LABEL_0")', 0), ('1 ("LABEL_1")', 1)]


def test_methods_that_apply_to_a_cnn(resnet_dir):
    model = DemoModel(Explainer.from_pretrained(resnet_dir))
    assert "attention-rollout" not in model.methods and "moxi" in model.methods
    with pytest.raises(MoXIError, match="attention-rollout does not apply"):
        model.explain(_digit(3, 32), "attention-rollout")


@pytest.mark.parametrize("image, message", [
    (None, "no image"),
    (Image.new("RGB", (MAX_IMAGE_SIDE + 1, 4)), "limit"),
    ("/nonexistent.png", "does not exist"),
])
def test_bad_images(image, message):
    with pytest.raises(MoXIError, match=message):
        check_image(image)


def test_an_upload_that_is_not_an_image_is_named_as_the_user_named_it(tmp_path):
    stored = tmp_path / "gradio" / "0a1b2c" / "scan.png"
    stored.parent.mkdir(parents=True)
    stored.write_text("a text file with an image's name\n")
    with pytest.raises(MoXIError) as caught:
        check_image(Upload(os.fspath(stored), "scan.png"))
    assert str(caught.value) == "cannot read image 'scan.png': not an image file, or in a format Pillow cannot read"
    Image.new("RGB", (5, 3), (255, 0, 0)).save(stored)
    assert check_image(Upload(os.fspath(stored), "scan.png")).size == (5, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"players_grid": 3}, "does not divide"),
    ({"label": 99}, "out of range"),
    ({"reward": "odds"}, "unknown reward"),
    ({"curve": "sideways"}, "unknown curve"),
    ({"method": "lime"}, "does not apply"),
])
def test_impossible_options(tiny, kwargs, message):
    with pytest.raises(MoXIError, match=message):
        tiny.explain(_digit(4), **{"method": "moxi", **kwargs})


def test_compare_shows_each_method_readably(tiny, vit_dir):
    image = _digit(5)
    result = tiny.compare(image, "insertion", methods=["moxi", "gradcam"])
    expected = Explainer.from_pretrained(vit_dir).explain(image, "moxi", "insertion")
    assert result.record["methods"]["moxi"]["explanation"]["order"] == expected.order
    assert result.record["methods"]["moxi"]["insertion"]["patches_needed"] == expected.patches_needed
    # one picture per method, as large as the explanation's own heatmap, captioned with its name and AUCs
    assert [caption.split(" ")[0] for _, caption in result.heatmaps] == ["moxi", "gradcam"]
    auc = result.record["methods"]["moxi"]["insertion"]["auc"]
    assert result.heatmaps[0][1] == f"moxi · AUC {auc:.2f}"
    assert result.heatmaps[0][0].size == tiny.explain(image, "moxi").heatmap.size
    assert result.curves.size[0] >= 900  # both curves on a picture of their own, not a strip of a sheet
    assert "/" not in result.record["methods"]["moxi"]["explanation"]["model"]  # never the server's path


def test_cancel_stops_a_running_request_and_leaves_the_model_alone(tiny):
    image = _digit(6)
    before = tiny.explain(image, "full-shapley").explanation
    adapter_class = type(tiny.explainer.adapter)
    cancel = threading.Event()
    seen = []

    def progress(fraction, text):  # cancel once coalitions are being evaluated
        seen.append((fraction, text))
        if text.startswith("full-shapley:"):
            cancel.set()

    with pytest.raises(Cancelled):
        tiny.explain(image, "full-shapley", progress=progress, cancel=cancel)
    assert seen and seen[-1][0] < 0.5 and "coalitions" in seen[-1][1]  # stopped early, mid-run
    assert type(tiny.explainer.adapter) is adapter_class  # the shared adapter was never changed
    assert not torch.nn.modules.module._global_forward_pre_hooks
    _same(tiny.explain(image, "full-shapley").explanation, before)  # nothing left behind
    with pytest.raises(Cancelled):  # cancelled before it started
        tiny.explain(image, "moxi", cancel=cancel)


def test_full_shapley_progress_counts_its_coalitions(tiny):
    seen = []
    tiny.explain(_digit(15), "full-shapley", progress=lambda fraction, text: seen.append((fraction, text)))
    fractions = [fraction for fraction, text in seen if text.startswith("full-shapley:")]
    assert fractions == sorted(fractions) and fractions[0] == 0.0
    assert "of 3,019 coalitions" in seen[0][1]  # 200 permutations x 15 prefixes, v(∅) and v(N), then the 17-point curve


def _run_at_once(calls):
    """Run the callables in threads started together; their results (or errors) in order."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def work(index, call):
        start.wait()
        try:
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - returned to the test
            results[index] = error

    threads = [threading.Thread(target=work, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_requests_at_once_get_their_own_results(tiny):
    jobs = [(_digit(7), "attention-rollout", "insertion"), (_digit(8), "gradcam", "deletion"),
            (_digit(9), "moxi", "deletion"), (_digit(10), "self-shapley", "insertion")]
    sequential = [tiny.explain(*job).explanation for job in jobs]
    results = _run_at_once([lambda job=job: tiny.explain(*job).explanation for job in jobs])
    for index, expected in enumerate(sequential):
        _same(results[index], expected)
        assert results[index].method == jobs[index][1]


def test_cancelling_one_request_leaves_the_other_running(tiny):
    image = _digit(16)
    expected = tiny.explain(image, "moxi").explanation
    cancel = threading.Event()
    cancel.set()
    cancelled, finished = _run_at_once([lambda: tiny.explain(_digit(17), "full-shapley", cancel=cancel),
                                        lambda: tiny.explain(image, "moxi").explanation])
    assert isinstance(cancelled, Cancelled)
    _same(finished, expected)


def test_progress_shows_the_work_the_method_costs(tiny):
    shown = []
    tiny.explain(_digit(7), "moxi", progress=lambda fraction, text: shown.append((fraction, text)))
    expected = tiny.explainer.cost(["moxi"], ["insertion"], interactions=True).coalitions  # curve and pairs included
    assert shown[0] == (0.0, f"moxi: 0 of {expected:,} coalitions, 0 s")


def test_a_comparison_cancelled_while_it_runs_is_a_cancel(tiny):
    cancel = threading.Event()
    with pytest.raises(Cancelled, match="^cancelled$"):  # not re-worded as a method's failure
        tiny.compare(_digit(8), methods=["moxi", "full-shapley"],
                     progress=lambda fraction, text: cancel.set(), cancel=cancel)


def test_default_model_loaded_once():
    first = load_demo_model()
    assert load_demo_model() is first
    assert [p.name for p in first.samples] == [p.name for p in default_sample_images()]
    assert first.input_note == DEFAULT_MODEL_NOTE


def test_explanation_json_names_a_local_model_by_its_folder(tiny, vit_dir):
    for demo_model, folder in ((load_demo_model(), default_model_path()), (tiny, Path(vit_dir))):
        result = demo_model.explain(_digit(18), "self-shapley")
        text = Path(result.json_path).read_text()
        assert json.loads(text)["model"] == folder.resolve().name  # as `moxi explain` writes it
        assert os.fspath(folder.resolve().parent) not in text  # nothing of where the server keeps it


def test_the_intro_says_what_the_page_does_and_what_the_model_expects(tiny):
    from moxi_hf.demo.app import intro_markdown

    intro = intro_markdown(load_demo_model())
    for words in ("MoXI", "*player*", "*coalition*", "arxiv.org", "docs/demo.md", DEFAULT_MODEL_NOTE):
        assert words in intro
    assert "Input" not in intro_markdown(tiny)  # nothing is known of what another model expects


def test_page_helpers():
    from moxi_hf.demo.app import parse_grid, parse_label

    assert parse_label("prediction") is None and parse_label("7") == 7
    assert parse_grid("patch") is None and parse_grid("2") == 2
    with pytest.raises(MoXIError):
        parse_label("seven")


def test_page_handlers(tiny, vit_dir, tmp_path):
    pytest.importorskip("gradio")
    from moxi_hf.demo.app import PageHandlers

    handlers = PageHandlers(tiny)
    image = _digit(12)
    needed, heatmap, curve, _, json_path = handlers.explain(image, "moxi", "deletion", "2", "log-odds", "patch")
    expected = Explainer.from_pretrained(vit_dir).explain(image, "moxi", "deletion", label=2)
    assert json.loads(Path(json_path).read_text())["order"] == expected.order
    assert isinstance(heatmap, Image.Image) and isinstance(curve, Image.Image)
    assert html.escape(expected.needed_text.removeprefix(f"{expected.patches_needed} ")) in needed
    # a mistake is our one line in place of the results, with no picture and no file left from before
    stored = tmp_path / "upload" / "notes.png"
    stored.parent.mkdir()
    stored.write_text("not an image")
    for given, message in ((None, "no image: upload"), ({"path": os.fspath(stored), "orig_name": "notes.png"},
                                                        "cannot read image &#x27;notes.png&#x27;: not an image")):
        needed, *pictures = handlers.explain(given, "moxi", "insertion", "prediction", "log-odds", "patch")
        assert needed == f'<span class="error" role="alert">{message}' + needed.split(message)[1]
        assert os.fspath(stored.parent) not in needed
        assert pictures[0] is None and pictures[1] is None and pictures[3] is None
    status, heatmaps, curves = handlers.compare(image, "insertion", "prediction", "log-odds", "3")
    assert 'class="error"' in status and "does not divide" in status and heatmaps is None and curves is None
    status, heatmaps, curves = handlers.compare(image, "insertion", "prediction", "log-odds", "2")
    assert len(heatmaps) == len(tiny.methods) and isinstance(curves, Image.Image) and "methods on label" in status


@pytest.mark.parametrize("curve, predictions, label, predicted, count, sentence", [
    ("insertion", [0, 0, 3, 3, 3], 3, 3, "2", "of 4 patches needed to predict 3 (moxi, insertion; the model predicts 3)"),
    ("deletion", [8, 8, 8, 8, 8], 3, 8, None,
     "3 is not predicted to begin with (the model predicts 8), so no patch needs removing (moxi, deletion)"),
])
def test_the_patches_needed_line(curve, predictions, label, predicted, count, sentence):
    from moxi_hf import Explanation
    from moxi_hf.demo.app import needed_html

    explanation = Explanation(method="moxi", curve=curve, label=label, order=[0, 1, 2, 3], heatmap=[[2, 1], [0, 0]],
                              patches_needed=2 if count else 1, grid=(2, 2), curve_predictions=predictions,
                              predicted=predicted)
    shown = needed_html(type("Result", (), {"explanation": explanation, "needed_text": explanation.needed_text})())
    assert ('<span id="patches-needed-count">' in shown) == (count is not None)  # a big number only when it counts
    assert shown.endswith(f'<span id="patches-needed-text">{sentence}</span>')


def test_page_cancel_button_stops_the_sessions_request(tiny):
    pytest.importorskip("gradio")
    from moxi_hf.demo.app import CANCELLED_HTML, PageHandlers

    handlers = PageHandlers(tiny)
    request = type("Request", (), {"session_hash": "abc"})()
    running, cancelled = threading.Event(), threading.Event()

    def progress(fraction, desc=None):  # hold the request mid-run until the test has cancelled it
        running.set()
        cancelled.wait(30)

    out: list = []
    worker = threading.Thread(target=lambda: out.append(handlers.explain(
        _digit(13), "full-shapley", "insertion", "prediction", "log-odds", "patch", request, progress)))
    worker.start()
    assert running.wait(30)
    assert handlers.cancel(type("Request", (), {"session_hash": "other"})()) == 0  # not another user's
    assert handlers.cancel(request) == 1
    cancelled.set()
    worker.join(60)
    assert not worker.is_alive() and len(out) == 1
    assert not any(isinstance(value, Image.Image) for value in out[0])  # no picture: it was cancelled
    assert CANCELLED_HTML in out[0]  # but a clear message
    assert handlers.cancel(request) == 0  # nothing left running


def test_build_demo_from_an_explainer(vit_dir):
    gr = pytest.importorskip("gradio")
    demo = __import__("moxi_hf.demo", fromlist=["build_demo"]).build_demo(Explainer.from_pretrained(vit_dir))
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"intro", "image", "method", "run", "cancel", "compare", "heatmap", "patches-needed", "curve",
            "compare-status", "compare-heatmaps", "compare-curves"} <= ids


@pytest.mark.slow
def test_cli_without_gradio_says_how_to_install(tmp_path):
    (tmp_path / "gradio.py").write_text("raise ImportError('no gradio here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "moxi_hf", "demo"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert 'pip install -e ".[demo]"' in done.stderr and "Traceback" not in done.stderr


def test_space_app_serves_the_default_model():
    gr = pytest.importorskip("gradio")
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.demo, gr.Blocks)
    assert module.demo_model is load_demo_model()  # the same once-loaded model
    assert Path(module.demo_model.explainer.name).resolve() == default_model_path().resolve()


def _requirement_names(lines) -> set[str]:
    import re

    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ ;]", line)[0].lower().replace("_", "-"))
    return names


def _project() -> dict:
    """pyproject.toml's [project] table."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli, the same parser
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_space_requirements_match_pyproject():
    project = _project()
    wanted = _requirement_names(project["dependencies"] + project["optional-dependencies"]["demo"])
    assert _requirement_names((ROOT / "requirements.txt").read_text().splitlines()) == wanted


def test_the_missing_gradio_message_names_the_required_version(monkeypatch):
    from moxi_hf.demo.app import import_gradio

    (required,) = _project()["optional-dependencies"]["demo"]
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails
    with pytest.raises(MoXIError, match="needs Gradio") as caught:
        import_gradio()
    assert f'pip install "{required}"' in str(caught.value)
