"""The plain functions behind the web demo (no Gradio here): load once, check inputs, explain, compare.

Every call into the library that the page makes goes through :class:`DemoModel`, which holds one
loaded :class:`~moxi_hf.explainer.Explainer` per process. The methods leave the shared model as they
found it, so requests run side by side without a lock; each request passes its own
:class:`RequestWatch` as the ``on_chunk`` callback of :meth:`~moxi_hf.Explainer.explain_methods`: it
counts the work done (the progress bar, its total known from the methods' cost) and stops the request
at its next chunk of coalitions once it is cancelled.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..artifacts import public_name
from ..defaults import DEFAULT_MODEL_NAME, default_model_path, sample_images
from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation
from ..images import decode_image, load_image
from ..labels import label_text, template_value
from ..options import CURVES, check_curve
from ..value import check_label, check_reward
from . import figures

__all__ = [
    "DEFAULT_MODEL_NOTE",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "Cancelled",
    "CompareResult",
    "DemoModel",
    "DemoResult",
    "RequestWatch",
    "Upload",
    "candidate_labels_from_text",
    "check_image",
    "grid_choices",
    "label_choices",
    "load_demo_model",
    "templates_from_text",
]

#: the largest image accepted, in pixels and per side (larger uploads get a clear error)
MAX_IMAGE_PIXELS = 16_000_000
MAX_IMAGE_SIDE = 8192
#: how a progress callback is called: (fraction 0..1 or None when unknown, what is happening)
ProgressFn = Callable[[float | None, str], None]
#: what the embedded default model expects of an image (its model card's note on inputs)
DEFAULT_MODEL_NOTE = ("a light digit on a dark background, like MNIST (a dark digit on white is misread: "
                      "each sample digit, inverted, is predicted 8)")


class Cancelled(MoXIError):
    """The user cancelled the request while it ran."""


def _progress_noop(fraction: float | None, text: str) -> None:
    return None


class RequestWatch:
    """One request's view of its own work, as the ``on_chunk`` callback: counts, reports progress, cancels.

    Called with (coalitions, token-forwards) of each chunk before it is evaluated; raises
    :class:`Cancelled` once ``cancel`` is set. ``expected``: the (coalitions, token-forwards) the request
    will evaluate, where known (the bar then shows the fraction of token-forwards done).
    """

    def __init__(self, stage: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                 expected: tuple[int, int] | None = None, every_s: float = 0.25):
        self.stage, self.expected, self.every_s = stage, expected, every_s
        self.progress = progress or _progress_noop
        self.cancel = cancel
        self.coalitions = self.tokens = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def __call__(self, coalitions: int, tokens: int) -> None:
        self.check()
        now = time.monotonic()
        if now - self._shown >= self.every_s:
            self._shown = now
            elapsed = now - self.started
            if self.expected:
                self.progress(min(self.tokens / max(self.expected[1], 1), 0.99),
                              f"{self.stage}: {self.coalitions:,} of {self.expected[0]:,} coalitions, {elapsed:.0f} s")
            else:
                self.progress(None, f"{self.stage}: {self.coalitions:,} coalitions, {elapsed:.0f} s")
        self.coalitions += coalitions
        self.tokens += tokens


@dataclass
class DemoResult:
    """What the page shows after one explanation."""

    explanation: Explanation
    heatmap: Image.Image  # the heatmap over the model's view of the image, with its rank legend
    curve: Image.Image  # p(label) along the explanation's curve
    interactions: Image.Image | None  # MoXI's interaction picture (None for other methods)
    needed_text: str  # "5 of 49 patches needed to predict 7"
    json_path: str  # explanation.json written for download (with gains and interactions when computed)


@dataclass
class CompareResult:
    """What the page shows after comparing methods on one image."""

    heatmaps: list[tuple[Image.Image, str]]  # per method: its heatmap with the rank legend, and a caption
    curves: Image.Image  # the insertion and deletion curves of every method
    record: dict  # the comparison as JSON (``compare.json`` of ``moxi compare``)


@dataclass(frozen=True)
class Upload:
    """A file the page received: where the server stored it and the name it had for the user."""

    path: str
    name: str


def check_image(image) -> Image.Image:
    """An RGB PIL image from what the page sent (an :class:`Upload`, PIL, array or path), or a
    :class:`MoXIError` saying why not (an upload is named as the user named it)."""
    if image is None:
        raise MoXIError("no image: upload, paste or take one, or click a sample")
    if isinstance(image, Upload):
        image = decode_image(Path(image.path), image.name)
    if isinstance(image, Image.Image):
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
            raise MoXIError(f"the image is {width}x{height} pixels; the limit is {MAX_IMAGE_SIDE} per side and "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
    return load_image(image)


def candidate_labels_from_text(text: str | Sequence[str] | None) -> list[str] | None:
    """The candidate labels typed in the page's box, comma-separated (a list passes through; None: the
    model's own). Each label is stripped of surrounding spaces; the library judges the list (an empty
    box is no label at all, an empty entry between two commas is an empty label)."""
    if text is None or not isinstance(text, str):
        return None if text is None else list(text)
    return [label.strip() for label in text.split(",")] if text.strip() else []


def templates_from_text(text: str | Sequence[str] | None) -> str | list[str] | None:
    """The prompt template(s) typed in the page's box: one per line (several lines: a prompt ensemble);
    a list passes through, None keeps the model's own. An empty box is the empty template (refused)."""
    if text is None or not isinstance(text, str):
        return None if text is None else list(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return template_value(lines) or text.strip()


def grid_choices(explainer: Explainer) -> list[int]:
    """Coarser players grids G (G×G players, each a block of patches) that divide the patch grid, finest first."""
    rows, cols = explainer.players.patch_grid
    return [g for g in range(max(rows, cols), 1, -1) if rows % g == 0 and cols % g == 0 and (g, g) != (rows, cols)]


def label_choices(names: Sequence[str | None]) -> list[tuple[str, int]]:
    """(shown text, class index) for classes named ``names`` in index order (:meth:`Explainer.label_names`,
    or the candidate labels typed on the page)."""
    return [(label_text(index, name), index) for index, name in enumerate(names)]


class DemoModel:
    """One loaded model for the page: its explainer(s), the methods that apply and its samples."""

    def __init__(self, explainer: Explainer, samples: list[Path] | None = None, title: str | None = None,
                 input_note: str | None = None):
        self.explainer = explainer
        self.samples = list(samples or [])
        self.title = title or public_name(explainer.name)
        #: what the model expects of an image, shown on the page (None: nothing known)
        self.input_note = input_note
        self._guard = threading.Lock()  # the caches below, never a request's whole run
        self._explainers: dict[tuple[str, int | None], Explainer] = {(explainer.reward, None): explainer}
        #: the methods that apply to this model (all game-theoretic ones; CAMs/rollout where the model has them)
        self.methods = explainer.applicable_methods()
        self.output_dir = Path(tempfile.mkdtemp(prefix="moxi-demo-"))

    # -- choices -----------------------------------------------------------------------------------

    def explainer_for(self, reward: str | None = None, players_grid: int | None = None) -> Explainer:
        """The explainer with this reward and players grid, sharing the loaded model (built once and kept)."""
        base = self.explainer
        reward = check_reward(reward or base.reward)
        rows, cols = base.players.patch_grid
        if players_grid is not None and players_grid not in grid_choices(base) + ([rows] if rows == cols else []):
            raise MoXIError(f"a {players_grid}x{players_grid} players grid does not divide the {rows}x{cols} patch grid")

        with self._guard:
            if (reward, players_grid) not in self._explainers:
                self._explainers[(reward, players_grid)] = Explainer(
                    base.model, base.processor, base.adapter, reward=reward, players_grid=players_grid,
                    max_batch_size=base.max_batch_size, max_tokens=base.max_tokens, name=base.name,
                    tokenizer=base.tokenizer)
            return self._explainers[(reward, players_grid)]

    def labelled(self, reward: str | None = None, players_grid: int | None = None,
                 candidate_labels: str | Sequence[str] | None = None,
                 hypothesis_template: str | Sequence[str] | None = None) -> Explainer:
        """:meth:`explainer_for` with a zero-shot model's candidate labels and template as the page's boxes
        send them (:func:`candidate_labels_from_text`, :func:`templates_from_text`; None keeps the model's):
        the library refuses a label set it cannot use (one line) before any work."""
        return self.explainer_for(reward, players_grid).labelled(candidate_labels_from_text(candidate_labels),
                                                                 templates_from_text(hypothesis_template))

    def _check(self, explainer: Explainer, method: str, curve: str, label: int | None) -> None:
        if method not in self.methods:
            raise MoXIError(f"{method} does not apply to this model; choose one of {', '.join(self.methods)}")
        check_curve(curve)
        if label is not None:
            check_label(label, explainer.num_labels)

    # -- running -----------------------------------------------------------------------------------

    def explain(self, image, method: str = "moxi", curve: str = "insertion", label: int | None = None,
                reward: str | None = None, players_grid: int | None = None, *,
                candidate_labels: str | Sequence[str] | None = None,
                hypothesis_template: str | Sequence[str] | None = None,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> DemoResult:
        """Explain one image like :meth:`Explainer.explain` (MoXI with its interactions) and draw what the page shows.

        ``candidate_labels``, ``hypothesis_template``: a zero-shot model's classes and prompt for this request
        (see :meth:`labelled`); ``label`` is an index into those labels.
        """
        picture = check_image(image)
        explainer = self.labelled(reward, players_grid, candidate_labels, hypothesis_template)
        self._check(explainer, method, curve, label)
        interactions = method == "moxi"
        watch = RequestWatch(method, progress, cancel, _expected(explainer, [method], [curve], interactions))
        watch.check()
        explanation = explainer.explain_methods([picture], [method], [curve], None if label is None else [label],
                                                interactions=interactions, on_chunk=watch)[(method, curve)][0]
        watch.progress(0.99, "drawing")
        explanation.model = public_name(explanation.model)  # as the CLI writes it: never the server's path
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        json_path = folder / "explanation.json"
        explanation.to_json(json_path)
        return DemoResult(
            explanation=explanation,
            heatmap=figures.heatmap_figure(explanation),
            curve=figures.curve_figure(explanation),
            interactions=figures.interactions_figure(explanation),
            needed_text=explanation.needed_text,
            json_path=os.fspath(json_path),
        )

    def compare(self, image, curve: str = "insertion", label: int | None = None, reward: str | None = None,
                players_grid: int | None = None, methods: list[str] | None = None, *,
                candidate_labels: str | Sequence[str] | None = None,
                hypothesis_template: str | Sequence[str] | None = None,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> CompareResult:
        """Every method that applies on one image: each method's heatmap, all curves, and the JSON record
        (a zero-shot model's labels and template as for :meth:`explain`)."""
        picture = check_image(image)
        methods = list(methods or self.methods)
        explainer = self.labelled(reward, players_grid, candidate_labels, hypothesis_template)
        for method in methods:
            self._check(explainer, method, curve, label)
        watch = RequestWatch(f"comparing {len(methods)} methods", progress, cancel,
                             _expected(explainer, methods, list(CURVES), False))
        watch.check()
        heatmaps, curves, record = figures.compare_figures(explainer, picture, methods, curve, label, on_chunk=watch)
        return CompareResult(heatmaps, curves, record)


def _expected(explainer: Explainer, methods: list[str], curves: list[str], interactions: bool) -> tuple[int, int] | None:
    """(coalitions, token-forwards) of one image explained so, from the methods' cost; None when unknown."""
    cost = explainer.cost(methods, curves, interactions=interactions)
    return None if cost is None else (cost.coalitions, explainer.token_forwards(cost))


def load_demo_model(model: str | None = None, dtype: str | None = None, device: str | None = None,
                    trust_remote_code: bool = False) -> DemoModel:
    """The page's model, loaded once per process: ``model`` is a folder or Hub id (None: the embedded default).

    ``trust_remote_code``: let a model that ships its own Python code run it (never unless asked).
    """
    return _load_demo_model(model, dtype, device, bool(trust_remote_code))


@functools.lru_cache(maxsize=4)
def _load_demo_model(model: str | None, dtype: str | None, device: str | None, trust_remote_code: bool) -> DemoModel:
    path = os.fspath(default_model_path()) if model is None else model
    explainer = Explainer.from_pretrained(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    local = Path(path).is_dir()
    samples = sample_images(path) if local else []
    default = model is None or (local and _is_default_model(Path(path)))
    title = f"{DEFAULT_MODEL_NAME} (the embedded default: a tiny ViT for MNIST digits)" if model is None \
        else public_name(model)
    return DemoModel(explainer, samples, title, DEFAULT_MODEL_NOTE if default else None)


def _is_default_model(folder: Path) -> bool:
    try:
        return folder.resolve() == default_model_path().resolve()
    except MoXIError:  # no default model here: the folder is another one
        return False
