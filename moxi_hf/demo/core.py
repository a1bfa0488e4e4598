"""The plain functions behind the web demo (no Gradio here): load once, check inputs, explain, compare.

Every call into the library that the page makes goes through :class:`DemoModel`, which holds one
loaded :class:`~moxi_hf.explainer.Explainer` per process. The methods leave the shared model as they
found it, so requests run side by side without a lock; each request gets its own explainer whose
removal adapter counts the coalitions it evaluates (the progress bar) and stops at the next chunk of
coalitions once the request is cancelled.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..defaults import default_model_path, sample_images
from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation
from ..images import load_image
from ..methods import CURVES, METHODS, get_method
from ..methods.base import check_curve
from ..removal import RemovalAdapter
from ..value import check_reward
from . import figures

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "Cancelled",
    "DemoModel",
    "DemoResult",
    "RequestWatch",
    "check_image",
    "grid_choices",
    "label_choices",
    "load_demo_model",
    "watched_adapter",
]

#: the largest image accepted, in pixels and per side (larger uploads get a clear error)
MAX_IMAGE_PIXELS = 16_000_000
MAX_IMAGE_SIDE = 8192
#: how a progress callback is called: (fraction 0..1 or None when unknown, what is happening)
ProgressFn = Callable[[float | None, str], None]


class Cancelled(MoXIError):
    """The user cancelled the request while it ran."""


def _progress_noop(fraction: float | None, text: str) -> None:
    return None


class RequestWatch:
    """One request's view of its own work: counts coalitions, reports progress, raises :class:`Cancelled`.

    Called with the number of coalitions of each chunk before it is evaluated. ``expected``: the
    coalitions the request will evaluate, where known (the bar then shows a fraction).
    """

    def __init__(self, stage: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                 expected: int | None = None, every_s: float = 0.25):
        self.stage, self.expected, self.every_s = stage, expected, every_s
        self.progress = progress or _progress_noop
        self.cancel = cancel
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def __call__(self, coalitions: int) -> None:
        self.check()
        now = time.monotonic()
        if now - self._shown >= self.every_s:
            self._shown = now
            elapsed = now - self.started
            if self.expected:
                self.progress(min(self.done / self.expected, 0.99),
                              f"{self.stage}: {self.done:,} of {self.expected:,} coalitions, {elapsed:.0f} s")
            else:
                self.progress(None, f"{self.stage}: {self.done:,} coalitions, {elapsed:.0f} s")
        self.done += coalitions


class _Watched:
    """Mixin over a removal adapter class: the request's :class:`RequestWatch` sees each chunk first."""

    watch: Callable[[int], None]  # a RequestWatch, called with the chunk's number of coalitions

    def logits(self, prepared, image_index, keep):
        self.watch(int(keep.shape[0]))
        return super().logits(prepared, image_index, keep)


@functools.cache
def _watched_class(cls: type) -> type:
    return type(f"Watched{cls.__name__}", (_Watched, cls), {"__module__": __name__})


def watched_adapter(adapter: RemovalAdapter, watch: Callable[[int], None]) -> RemovalAdapter:
    """A per-request copy of ``adapter`` (same class family, same model object) that calls ``watch`` per chunk.

    The shared adapter and model are untouched: no hooks, no attribute changes.
    """
    copy = object.__new__(_watched_class(type(adapter)))
    copy.__dict__.update(vars(adapter))
    copy.watch = watch
    return copy


class _EvaluatesCoalitions(Exception):
    """Raised by the methods probe at a method's first coalition."""


def _stop_at_first_coalition(coalitions: int) -> None:
    raise _EvaluatesCoalitions


def expected_coalitions(method: str, n_players: int) -> int | None:
    """Coalitions one image costs with this method's defaults, where it is known in advance (else None)."""
    if method == "full-shapley":
        return 2 * n_players * get_method(method).num_samples + n_players + 1  # contexts, then the curve
    if method == "moxi":
        return 1 + n_players * (n_players + 1) // 2  # the empty (or full) coalition, then every greedy step
    return None


@dataclass
class DemoResult:
    """What the page shows after one explanation."""

    explanation: Explanation
    heatmap: Image.Image  # the heatmap over the model's view of the image
    curve: Image.Image  # p(label) along the explanation's curve
    interactions: Image.Image | None  # MoXI's interaction picture (None for other methods)
    needed_text: str  # "5 of 49 patches needed to predict 7"
    json_path: str  # explanation.json written for download (with gains and interactions when computed)


def check_image(image) -> Image.Image:
    """An RGB PIL image from what the page sent (PIL, array or path), or a :class:`MoXIError` saying why not."""
    if image is None:
        raise MoXIError("no image: upload, paste or take one, or click a sample")
    if isinstance(image, Image.Image):
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
            raise MoXIError(f"the image is {width}x{height} pixels; the limit is {MAX_IMAGE_SIDE} per side and "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
    return load_image(image)


def grid_choices(explainer: Explainer) -> list[int]:
    """Coarser players grids G (G×G players, each a block of patches) that divide the patch grid, finest first."""
    rows, cols = explainer.players.patch_grid
    return [g for g in range(max(rows, cols), 1, -1) if rows % g == 0 and cols % g == 0 and (g, g) != (rows, cols)]


def label_choices(explainer: Explainer) -> list[tuple[str, int]]:
    """(shown text, class index) for every class of the model."""
    choices = []
    for index in range(explainer.num_labels):
        name = explainer.label_name(index)
        choices.append((str(index) if name is None or name == str(index) else f"{index}: {name}", index))
    return choices


def _needed_text(explanation: Explanation) -> str:
    total = explanation.n_players
    unit = "patches" if explanation.patch_grid in (None, explanation.grid) else "players"
    label = explanation.label_text
    k = explanation.patches_needed
    if not explanation.reached:
        return (f"never predicted {label}, even with all {total} {unit}" if explanation.curve == "insertion"
                else f"still predicts {label} after removing all {total} {unit}")
    if explanation.curve == "insertion":
        return f"{k} of {total} {unit} needed to predict {label}"
    return f"{k} of {total} {unit} removed to change the prediction from {label}"


class DemoModel:
    """One loaded model for the page: its explainer(s), the methods that apply and its samples."""

    def __init__(self, explainer: Explainer, samples: list[Path] | None = None, title: str | None = None):
        self.explainer = explainer
        self.samples = list(samples or [])
        self.title = title or explainer.name
        self._guard = threading.Lock()  # the caches below, never a request's whole run
        self._explainers: dict[tuple[str, int | None], Explainer] = {(explainer.reward, None): explainer}
        self._methods: list[str] | None = None
        self.output_dir = Path(tempfile.mkdtemp(prefix="moxi-demo-"))

    # -- choices -----------------------------------------------------------------------------------

    @property
    def methods(self) -> list[str]:
        """The methods that apply to this model (all game-theoretic ones; CAMs/rollout where the model has them)."""
        with self._guard:
            if self._methods is None:
                self._methods = self._applicable_methods()
        return self._methods

    def _applicable_methods(self) -> list[str]:
        size = getattr(self.explainer.processor, "size", None) or {}
        side = int(size.get("height", size.get("shortest_edge", 224))) if isinstance(size, dict) else 224
        pixel_values, _ = self.explainer.preprocess([Image.new("RGB", (side, side), (128, 128, 128))])
        probe = self.explainer_for(watch=_stop_at_first_coalition)
        game = probe.value_function(pixel_values, [0])
        found = []
        for name in METHODS:
            try:  # model-specific methods run (one forward/backward) or refuse; the others reach the game
                get_method(name).attribute(game, CURVES[0])
            except _EvaluatesCoalitions:  # it only needs the value function, which every model has
                pass
            except MoXIError:
                continue
            found.append(name)
        return found

    def explainer_for(self, reward: str | None = None, players_grid: int | None = None,
                      watch: Callable[[int], None] | None = None) -> Explainer:
        """The explainer with this reward and players grid, sharing the loaded model.

        Without ``watch`` it is built once and kept; with one it is this request's own (see :func:`watched_adapter`).
        """
        base = self.explainer
        reward = check_reward(reward or base.reward)
        rows, cols = base.players.patch_grid
        if players_grid is not None and players_grid not in grid_choices(base) + ([rows] if rows == cols else []):
            raise MoXIError(f"a {players_grid}x{players_grid} players grid does not divide the {rows}x{cols} patch grid")

        def build(adapter: RemovalAdapter) -> Explainer:
            return Explainer(base.model, base.processor, adapter, reward=reward, players_grid=players_grid,
                             max_batch_size=base.max_batch_size, max_tokens=base.max_tokens, name=base.name)

        if watch is not None:
            return build(watched_adapter(base.adapter, watch))
        with self._guard:
            if (reward, players_grid) not in self._explainers:
                self._explainers[(reward, players_grid)] = build(base.adapter)
            return self._explainers[(reward, players_grid)]

    def _check(self, method: str, curve: str, label: int | None) -> None:
        if method not in self.methods:
            raise MoXIError(f"{method} does not apply to this model; choose one of {', '.join(self.methods)}")
        check_curve(curve)
        if label is not None and not 0 <= int(label) < self.explainer.num_labels:
            raise MoXIError(f"label {label} is out of range: the model has {self.explainer.num_labels} classes")

    # -- running -----------------------------------------------------------------------------------

    def explain(self, image, method: str = "moxi", curve: str = "insertion", label: int | None = None,
                reward: str | None = None, players_grid: int | None = None, *,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> DemoResult:
        """Explain one image like :meth:`Explainer.explain` (MoXI with its interactions) and draw what the page shows."""
        picture = check_image(image)
        self._check(method, curve, label)
        watch = RequestWatch(method, progress, cancel)
        explainer = self.explainer_for(reward, players_grid, watch)
        watch.expected = expected_coalitions(method, explainer.players.n_players)
        watch.check()
        explanation = explainer.explain(picture, method, curve, None if label is None else int(label),
                                        interactions=method == "moxi")
        watch.progress(0.99, "drawing")
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        json_path = folder / "explanation.json"
        explanation.to_json(json_path)
        return DemoResult(
            explanation=explanation,
            heatmap=figures.heatmap_figure(explanation),
            curve=figures.curve_figure(explanation),
            interactions=figures.interactions_figure(explanation),
            needed_text=_needed_text(explanation),
            json_path=os.fspath(json_path),
        )

    def compare(self, image, curve: str = "insertion", label: int | None = None, reward: str | None = None,
                players_grid: int | None = None, methods: list[str] | None = None, *,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> tuple[Image.Image, dict]:
        """Every method that applies on one image: the compare sheet (as an image) and its JSON-able record."""
        picture = check_image(image)
        methods = list(methods or self.methods)
        for method in methods:
            self._check(method, curve, label)
        watch = RequestWatch(f"comparing {len(methods)} methods", progress, cancel)
        explainer = self.explainer_for(reward, players_grid, watch)
        watch.check()
        return figures.compare_sheet(explainer, picture, methods, curve, label)


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
    samples = sample_images(path) if Path(path).is_dir() else []
    title = "the embedded default model (tiny ViT on MNIST digits)" if model is None else model
    return DemoModel(explainer, samples, title)
