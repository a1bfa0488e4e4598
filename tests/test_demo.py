"""The web demo: its plain functions against Explainer.explain, cancelling, concurrency, and the page in a browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moxi_hf import Explainer, MoXIError
from moxi_hf.defaults import default_model_path, default_sample_images
from moxi_hf.demo import Cancelled, DemoModel, check_image, load_demo_model
from moxi_hf.demo.core import MAX_IMAGE_SIDE, grid_choices, label_choices

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


def test_pictures_come_from_the_library(tiny):
    from moxi_hf.demo.figures import to_image
    from moxi_hf.plotting import plot_explanation, plot_explanation_curve

    result = tiny.explain(_digit(14), "self-shapley")
    explanation = result.explanation
    assert explanation.display_image is not None  # the heatmap is drawn over the model's view
    assert np.array_equal(np.asarray(result.heatmap), np.asarray(to_image(plot_explanation(explanation))))
    assert np.array_equal(np.asarray(result.curve), np.asarray(to_image(plot_explanation_curve(explanation))))


def test_choices(tiny):
    assert tiny.methods == ["moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++", "attention-rollout"]
    assert grid_choices(tiny.explainer) == [2]  # 4x4 patches
    assert label_choices(tiny.explainer)[:2] == [('0 ("LABEL_0")', 0), ('1 ("LABEL_1")', 1)]


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


def test_compare_sheet(tiny, vit_dir):
    image = _digit(5)
    sheet, record = tiny.compare(image, "insertion", methods=["moxi", "gradcam"])
    assert sheet.size[0] > 300
    expected = Explainer.from_pretrained(vit_dir).explain(image, "moxi", "insertion")
    assert record["methods"]["moxi"]["explanation"]["order"] == expected.order
    assert record["methods"]["moxi"]["insertion"]["patches_needed"] == expected.patches_needed


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


def test_page_helpers():
    from moxi_hf.demo.app import parse_grid, parse_label

    assert parse_label("prediction") is None and parse_label("7") == 7
    assert parse_grid("patch") is None and parse_grid("2") == 2
    with pytest.raises(MoXIError):
        parse_label("seven")


def test_page_handlers(tiny, vit_dir):
    gr = pytest.importorskip("gradio")
    from moxi_hf.demo.app import PageHandlers

    handlers = PageHandlers(tiny)
    image = _digit(12)
    heatmap, needed, curve, _, json_path = handlers.explain(image, "moxi", "deletion", "2", "log-odds", "patch")
    expected = Explainer.from_pretrained(vit_dir).explain(image, "moxi", "deletion", label=2)
    assert f'<span id="patches-needed-count">{expected.patches_needed}</span>' in needed
    assert json.loads(Path(json_path).read_text())["order"] == expected.order
    assert isinstance(heatmap, Image.Image) and isinstance(curve, Image.Image)
    with pytest.raises(gr.Error, match="no image"):
        handlers.explain(None, "moxi", "insertion", "prediction", "log-odds", "patch")
    with pytest.raises(gr.Error, match="does not divide"):
        handlers.compare(image, "insertion", "prediction", "log-odds", "3")


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
    assert {"image", "method", "run", "cancel", "heatmap", "patches-needed", "curve", "compare-sheet"} <= ids


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


# -- end to end, in a real browser ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"moxi demo exited with {server.returncode}: {server.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"moxi demo did not answer on {url} within {timeout:.0f} s")


# Skipped without a browser, except in CI (CI=true), where .ci/run installs one and a skip would hide a failure.
@pytest.mark.skipif((CHROMIUM is None or not os.path.exists(CHROMEDRIVER)) and os.environ.get("CI") != "true",
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
                           ".ci/run installs them)")
@pytest.mark.slow
def test_page_in_a_browser(tmp_path):
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    samples = default_sample_images()[:2]
    explainer = Explainer.from_pretrained(default_model_path())
    expected = [explainer.explain(sample, "moxi", "insertion") for sample in samples]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    server = subprocess.Popen([sys.executable, "-m", "moxi_hf", "demo", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    driver = None
    launched = time.monotonic()
    try:
        _wait_for_server(url, server)
        start_up = time.monotonic() - launched
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1150"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        timings = []
        for index, want in enumerate(expected):  # first request, then a second one on another digit
            sample_buttons = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button"))
            sample_buttons[index].click()
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image img")))
            old = [e.get_attribute("src") for e in driver.find_elements(By.CSS_SELECTOR, "#heatmap img")]
            started = time.monotonic()
            driver.find_element(By.ID, "run").click()
            wait.until(lambda d, old=old: [e.get_attribute("src") for e in
                                           d.find_elements(By.CSS_SELECTOR, "#heatmap img")] not in ([], old))
            timings.append(time.monotonic() - started)
            count = wait.until(ec.presence_of_element_located((By.ID, "patches-needed-count")))
            assert int(count.text) == want.patches_needed
            text = driver.find_element(By.ID, "patches-needed-text").text
            assert f"of {want.n_players} patches needed to predict {want.label}" in text
            wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#interactions img")))  # MoXI's picture
        wanted = os.environ.get("MOXI_SAVE_SCREENSHOT")
        shot = ROOT / "docs" / "demo_screenshot.png" if wanted else tmp_path / "demo_screenshot.png"
        time.sleep(0.5)  # let the progress overlay fade out
        assert driver.save_screenshot(os.fspath(shot))
        print(f"\nstart-up {start_up:.1f} s; click to heatmap: first {timings[0]:.2f} s, second {timings[1]:.2f} s; "
              f"screenshot {shot}")
        # A long run (full-context Shapley) is stopped by Cancel, with a message instead of a result.
        choose = driver.find_element(By.CSS_SELECTOR, "#method input")
        choose.click()
        choose.send_keys(Keys.CONTROL, "a")
        choose.send_keys("full-shapley", Keys.ENTER)
        assert choose.get_attribute("value") == "full-shapley"
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: "full-shapley:" in d.find_element(By.ID, "heatmap").text)  # its coalition progress
        driver.find_element(By.ID, "cancel").click()
        wait.until(ec.presence_of_element_located((By.ID, "cancelled")))
        if os.environ.get("MOXI_DEBUG_SHOTS"):
            driver.save_screenshot(os.fspath(tmp_path / "cancelled.png"))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
