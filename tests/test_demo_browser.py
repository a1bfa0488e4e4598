"""The web page as a user finds it: `moxi demo` served on a free port and driven in headless Chromium.

One server and one browser for the whole visit: the intro, two sample digits explained (equal to the
library's results, the heatmap with its rank legend), the page at 1280x760 with Explain in view, a file
that is not an image, a comparison cancelled and one run, and the page on a 420 px phone screen.
``MOXI_SAVE_SCREENSHOT=1`` refreshes docs/demo_screenshot.png; ``MOXI_DEMO_SHOTS=DIR`` keeps every screenshot.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moxi_hf.defaults import default_sample_images
from moxi_hf.demo import load_demo_model
from moxi_hf.demo.core import DEFAULT_MODEL_NOTE

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"

# Skipped without a browser, except in CI (CI=true), where .ci/run installs one and a skip would hide a failure.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif((CHROMIUM is None or not os.path.exists(CHROMEDRIVER)) and os.environ.get("CI") != "true",
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                              "chromium-driver; .ci/run installs them)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"moxi demo exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"moxi demo did not answer on {url} within {timeout:.0f} s")


class Visit:
    """One browser on the page, with the few things the test does often."""

    def __init__(self, driver, shots: Path):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.shots = driver, shots
        self.wait = WebDriverWait(driver, 120, poll_frequency=0.05)

    def screen(self, width: int, height: int) -> None:
        """The page's viewport in CSS pixels (exactly: a window's size would include the browser's frame)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        found = self.find(selector)
        return found[0].text if found else ""

    def until(self, condition, what: str):
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait.until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"the page never showed {what}") from None

    def shoot(self, name: str) -> Path:
        time.sleep(0.5)  # let the progress overlay fade out
        path = self.shots / name
        assert self.driver.save_screenshot(os.fspath(path))
        return path

    def picture(self, selector: str) -> Image.Image:
        """The picture an <img> shows, fetched from the server as the browser fetched it."""
        with urllib.request.urlopen(self.find(selector)[0].get_attribute("src"), timeout=30) as response:
            return Image.open(io.BytesIO(response.read())).convert("RGB")

    def toasts(self) -> list[str]:
        return [toast.text for toast in self.find(".toast-body")]


def _shows(visit, selector: str, wanted: np.ndarray, other: np.ndarray) -> bool:
    """Whether the <img> at ``selector`` now shows ``wanted`` rather than ``other`` (pictures of the same size): far
    closer to it, pixel by pixel, than to ``other``. Not pixel-equal: the server draws in another process, whose
    floating point may move a line by a pixel. False while the picture is missing or being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        if not visit.find(selector):
            return False
        shown = np.asarray(visit.picture(selector), dtype=np.float64)
    except (StaleElementReferenceException, OSError):  # the <img> or its file replaced between look-up and fetch
        return False
    if shown.shape != wanted.shape:
        return False
    return np.abs(shown - wanted).mean() < 0.25 * np.abs(shown - other).mean()


def _source(images) -> str:
    return images[0].get_attribute("src") or "" if images else ""


def _explain_sample(visit: Visit, index: int) -> float:
    """Click sample ``index`` and Explain; wait for MoXI's pictures. Returns seconds from the click to the heatmap."""
    visit.find("#samples button")[index].click()
    visit.until(lambda: visit.find("#image img"), "the sample in the image box")
    visit.find("#run")[0].click()
    started = time.monotonic()
    visit.until(lambda: visit.find("#heatmap img"), "a heatmap")
    took = time.monotonic() - started
    visit.until(lambda: visit.find("#patches-needed-count"), "the number of patches needed")
    visit.until(lambda: visit.find("#interactions img") and visit.find("#interactions img")[0].is_displayed(),
                "MoXI's interaction picture")
    visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled again")
    return took


@contextlib.contextmanager
def _served(tmp_path: Path, *arguments: str):
    """``moxi demo ARGUMENTS`` on a free port and headless Chromium at 1280x760 on it: yields (visit, start-up
    seconds); the server's log must hold no traceback afterwards."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    shots = Path(os.environ.get("MOXI_DEMO_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    log = tmp_path / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "moxi_hf", "demo", "--port", str(port), *arguments],
                                  cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    driver = None
    launched = time.monotonic()
    try:
        _wait_for_server(url, server, log)
        start_up = time.monotonic() - launched
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        visit = Visit(driver, shots)
        visit.screen(1280, 760)
        driver.get(url)
        visit.until(lambda: visit.find("#samples button"), "the sample images")
        yield visit, start_up
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    logged = log.read_text()
    assert "Traceback" not in logged and "Could not preprocess" not in logged  # a user's mistake is not logged


def test_the_page_in_a_browser(tmp_path):
    pytest.importorskip("gradio")
    samples = default_sample_images()[:2]
    library = load_demo_model()  # what the page's server computes, here in the test's own process
    expected = [library.explain(sample, "moxi", "insertion") for sample in samples]
    with _served(tmp_path) as (visit, start_up):
        driver = visit.driver
        # The intro says what MoXI is, what players and coalitions are, and what the model expects.
        intro = visit.text("#intro")
        for words in ("MoXI", "player", "coalition", "docs/demo.md", DEFAULT_MODEL_NOTE):
            assert words in intro
        assert visit.find("#intro a")[0].get_attribute("href").startswith("https://arxiv.org/")

        # Two sample digits: each as Explainer.explain finds it, the heatmap with its rank legend.
        timings = []
        for index, want in enumerate(expected):
            timings.append(_explain_sample(visit, index))
            assert int(visit.text("#patches-needed-count")) == want.explanation.patches_needed
            assert (f"of {want.explanation.n_players} patches needed to predict {want.explanation.label}"
                    in visit.text("#patches-needed-text"))
            shown = np.asarray(visit.picture("#heatmap img"))
            assert np.array_equal(shown, np.asarray(want.heatmap))  # the library's figure, legend included
        legend = shown[:, int(shown.shape[1] * 0.8):].reshape(-1, 3).astype(int)
        darkest_red = (legend[:, 0] > 120) & (legend[:, 1] < 40) & (legend[:, 2] < 50)
        assert darkest_red.sum() > 500  # the colour bar's rank 1, right of the picture

        # At 1280x760 the whole Explain button is in view without scrolling.
        assert driver.execute_script("return [window.innerWidth, window.innerHeight, window.scrollY]") == [1280, 760, 0]
        button = visit.find("#run")[0].rect
        assert 0 <= button["y"] and button["y"] + button["height"] <= 760 and button["x"] + button["width"] <= 1280
        shot = visit.shoot("page_1280x760.png")
        if os.environ.get("MOXI_SAVE_SCREENSHOT"):
            shutil.copyfile(shot, ROOT / "docs" / "demo_screenshot.png")
        print(f"\nstart-up {start_up:.1f} s; click to heatmap: first {timings[0]:.2f} s, second {timings[1]:.2f} s")

        # On a phone the heatmap and the curve are one above the other, each nearly the screen's width.
        visit.screen(420, 800)
        visit.until(lambda: visit.find("#heatmap img") and visit.find("#heatmap")[0].is_displayed(), "the heatmap")
        time.sleep(0.3)  # the new layout
        heatmap, curve = visit.find("#heatmap")[0].rect, visit.find("#curve")[0].rect
        assert curve["y"] >= heatmap["y"] + heatmap["height"] and heatmap["width"] >= 300 <= curve["width"]
        driver.execute_script("document.querySelector('#patches-needed').scrollIntoView()")
        visit.shoot("page_420.png")
        visit.screen(1280, 760)
        driver.execute_script("window.scrollTo(0, 0)")

        # After that explanation, a file named like an image that is not one: our one line in place of the
        # results (the previous ones gone), Explain back, nothing logged.
        fake = tmp_path / "scan.png"
        fake.write_text("this is not an image\n")
        visit.find("#image button[aria-label='Remove Image']")[0].click()
        visit.find("#image input[type=file]")[0].send_keys(os.fspath(fake))
        visit.until(lambda: "scan" in _source(visit.find("#image img")), "the upload")
        visit.find("#run")[0].click()
        visit.until(lambda: visit.find("#patches-needed .error"), "the upload's error")
        assert visit.text("#patches-needed") == ("cannot read image 'scan.png': not an image file, "
                                                 "or in a format Pillow cannot read")
        assert not visit.find("#heatmap img") and not visit.find("#curve img") and not visit.find("#patches-needed-count")
        assert not (visit.find("#interactions img") and visit.find("#interactions img")[0].is_displayed())
        visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled after the error")
        visit.shoot("unreadable_upload.png")

        # Compare all methods: the tab opens, one progress bar, the run buttons locked until it ends;
        # cancelled, it says so (no error); run again, one captioned heatmap per method and the curves.
        visit.find("#samples button")[1].click()
        visit.until(lambda: "digit_3" in _source(visit.find("#image img")), "a sample")
        visit.find("#compare")[0].click()
        visit.until(lambda: "coalitions" in visit.text("#compare-status"), "the comparison's progress")
        assert not visit.find("#run")[0].is_enabled() and not visit.find("#compare")[0].is_enabled()
        assert len(visit.find("[role=progressbar]")) == len(visit.find("#compare-status [role=progressbar]")) == 1
        visit.find("#cancel")[0].click()
        visit.until(lambda: visit.find("#compare-status .cancelled"), "the cancel")
        assert visit.text("#compare-status").startswith("Cancelled")
        assert not any("error" in toast.lower() for toast in visit.toasts())
        visit.until(lambda: visit.find("#run")[0].is_enabled() and visit.find("#compare")[0].is_enabled(),
                    "the buttons back after the cancel")
        visit.shoot("compare_cancelled.png")
        visit.find("#compare")[0].click()
        visit.until(lambda: visit.find("#compare-curves img"), "the comparison's curves")
        captions = [caption.text for caption in visit.find("#compare-heatmaps .caption-label")]
        assert [caption.split(" ")[0] for caption in captions] == library.methods
        visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled after the comparison")
        visit.shoot("compare_1280.png")


def _type_into(visit: Visit, selector: str, text: str) -> None:
    """Replace a text box's content as a user does: select all, then type."""
    from selenium.webdriver.common.keys import Keys

    box = visit.find(f"{selector} textarea, {selector} input")[0]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def test_the_zero_shot_page_in_a_browser(tmp_path):
    """moxi-clip-mnist: the candidate labels box prefilled with the model's labels, labels typed, explained."""
    pytest.importorskip("gradio")
    clip = ROOT / "models" / "moxi-clip-mnist"
    library = load_demo_model(os.fspath(clip))
    template = library.explainer.hypothesis_template
    sample = library.samples[1]  # a 3
    want = library.explain(sample, "moxi", "insertion", label=1, candidate_labels="three, eight",
                           hypothesis_template=template)
    with _served(tmp_path, "--model", os.fspath(clip)) as (visit, _):
        labels_box = "#candidate-labels textarea, #candidate-labels input"
        template_box = "#hypothesis-template textarea, #hypothesis-template input"
        assert visit.find(labels_box)[0].get_attribute("value") == ", ".join(library.explainer.candidate_labels)
        assert visit.find(template_box)[0].get_attribute("value") == template
        assert "candidate labels" in visit.text("#intro")
        box = visit.find(labels_box)[0].rect  # in view at 1280x760 without scrolling, under Compare
        assert box["y"] > visit.find("#compare")[0].rect["y"] and box["y"] + box["height"] <= 760

        # Two labels typed; the label to explain (under options) offers them, and the second is chosen.
        _type_into(visit, "#candidate-labels", "three, eight")
        visit.find("#samples button")[1].click()
        visit.until(lambda: "digit_3" in _source(visit.find("#image img")), "the sample")
        visit.driver.find_element("xpath", "//button[.//span[text()='options']]").click()
        visit.until(lambda: visit.find("#label input"), "the options")[0].click()
        visit.until(lambda: [item.get_attribute("aria-label") for item in visit.find("#label [role=option]")]
                    == ["the prediction", '0 ("three")', '1 ("eight")'], "the typed labels as label choices")
        visit.find("#label [role=option]")[2].click()
        visit.find("#run")[0].click()
        visit.until(lambda: visit.find("#heatmap img"), "a heatmap")
        visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled again")
        assert '1 ("eight")' in visit.text("#patches-needed-text")
        assert want.needed_text in visit.text("#patches-needed").replace("\n", " ")
        assert np.array_equal(np.asarray(visit.picture("#heatmap img")), np.asarray(want.heatmap))
        visit.driver.execute_script("window.scrollTo(0, 0)")
        visit.shoot("zs-labels.png")

        # A label set the library refuses: its one line in place of the results.
        _type_into(visit, "#candidate-labels", "three, three")
        visit.find("#run")[0].click()
        visit.until(lambda: visit.find("#patches-needed .error"), "the labels' error")
        assert visit.text("#patches-needed") == "candidate labels must be distinct; repeated: 'three'"
        assert not visit.find("#heatmap img")
        visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled after the error")
        visit.driver.execute_script("window.scrollTo(0, 0)")
        visit.shoot("zs-error.png")

        # Two templates on two lines (Shift+Enter): a prompt ensemble, explained as the library does.
        from selenium.webdriver.common.keys import Keys

        _type_into(visit, "#candidate-labels", "three, eight")
        _type_into(visit, "#hypothesis-template", "the number {}.")
        visit.find(template_box)[0].send_keys(Keys.SHIFT, Keys.ENTER, Keys.NULL, "a handwritten {}.")  # NULL: Shift up
        assert visit.find(template_box)[0].get_attribute("value") == "the number {}.\na handwritten {}."
        ensemble, first_line = (library.explain(sample, "moxi", "insertion", label=1, candidate_labels=["three", "eight"],
                                                hypothesis_template=template)
                                for template in (["the number {}.", "a handwritten {}."], "the number {}."))
        # p(label) tells the templates apart
        wanted, other = (np.asarray(picture, dtype=np.float64) for picture in (ensemble.curve, first_line.curve))
        assert wanted.shape == other.shape and np.abs(wanted - other).mean() > 0
        visit.find("#run")[0].click()
        # The curve's picture is replaced after the heatmap's (and an earlier run's may still be shown): wait for it.
        visit.until(lambda: _shows(visit, "#curve img", wanted, other), "the ensemble's curve")
        visit.until(lambda: visit.find("#run")[0].is_enabled(), "Explain enabled again")
