"""The plain functions behind the web demo (no Gradio here): load once, check inputs, explain, compare.

Every call into the library that the page makes goes through :class:`DemoModel`, which holds one
loaded :class:`~moxi_hf.explainer.Explainer` per process and a lock around explaining: some methods
change the shared model while they run (rollout switches its attention implementation, Grad-CAM adds
hooks), so requests on one model run one at a time.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..defaults import default_model_path, sample_images
from ..errors import MoXIError
from ..explainer import Explainer
from ..explanation import Explanation
from ..images import load_image
from ..methods import CURVES, METHODS, get_method
from ..value import REWARDS
from . import figures

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "Cancelled",
    "DemoModel",
    "DemoResult",
    "check_image",
    "grid_choices",
    "label_choices",
    "load_demo_model",
]

#: the largest image accepted, in pixels and per side (larger uploads get a clear error)
MAX_IMAGE_PIXELS = 16_000_000
MAX_IMAGE_SIDE = 8192
#: how a progress callback is called: (fraction 0..1, what is happening)
ProgressFn = Callable[[float, str], None]


class Cancelled(MoXIError):
    """The user cancelled the request while it ran."""


# -- cancelling a running request ------------------------------------------------------------------
# Explaining is one library call that may run for minutes. While a cancellable request runs, a module
# forward pre-hook checks that thread's cancel event, so the next forward pass after the page's cancel
# button raises and the model is free again right away (the methods restore any change they made to
# the model in their own finally blocks). The hook is removed when the request ends.

_running = threading.local()


def _raise_if_cancelled(module, args):
    event = getattr(_running, "cancel", None)
    if event is not None and event.is_set():
        raise Cancelled("cancelled")


def _progress_noop(fraction: float, text: str) -> None:
    return None


def _interaction_options(explainer: Explainer, method: str) -> dict:
    """``interactions=True`` for MoXI where the library computes interactions (and Explanation draws them)."""
    if method != "moxi" or not hasattr(Explanation, "plot_interactions"):
        return {}
    parameters = inspect.signature(explainer.explain_batch).parameters
    return {"interactions": True} if "interactions" in parameters else {}


@dataclass
class DemoResult:
    """What the page shows after one explanation."""

    explanation: Explanation
    heatmap: Image.Image  # the heatmap over the image
    curve: Image.Image  # p(label) along the explanation's curve
    interactions: Image.Image | None  # MoXI's interaction picture, when the library draws one
    needed_text: str  # "5 of 49 patches needed to predict 7"
    json_path: str  # explanation.json written for download


def check_image(image) -> Image.Image:
    """An RGB PIL image from what the page sent (PIL, array or path), or a :class:`MoXIError` saying why not."""
    if image is None:
        raise MoXIError("no image: upload, paste or take one, or click a sample")
    if isinstance(image, Image.Image):
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
            raise MoXIError(f"the image is {width}x{height} pixels; the limit is {MAX_IMAGE_SIDE} per side and "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
        if width < 1 or height < 1:
            raise MoXIError("the image is empty")
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
    label = explanation.label_name if explanation.label_name is not None else str(explanation.label)
    predictions = explanation.curve_predictions or []
    k = explanation.patches_needed
    reached = k < len(predictions) and ((predictions[k] == explanation.label) == (explanation.curve == "insertion"))
    if not reached:
        return (f"never predicted {label}, even with all {total} {unit}" if explanation.curve == "insertion"
                else f"still predicts {label} after removing all {total} {unit}")
    if explanation.curve == "insertion":
        return f"{k} of {total} {unit} needed to predict {label}"
    return f"{k} of {total} {unit} removed to change the prediction from {label}"


class DemoModel:
    """One loaded model for the page: its explainer(s), the methods that apply, its samples and a lock."""

    def __init__(self, explainer: Explainer, samples: list[Path] | None = None, title: str | None = None):
        self.explainer = explainer
        self.samples = list(samples or [])
        self.title = title or explainer.name
        self.lock = threading.Lock()
        self._explainers: dict[tuple[str, int | None], Explainer] = {(explainer.reward, None): explainer}
        self._methods: list[str] | None = None
        self.output_dir = Path(tempfile.mkdtemp(prefix="moxi-demo-"))

    # -- choices -----------------------------------------------------------------------------------

    @property
    def methods(self) -> list[str]:
        """The methods that apply to this model (all game-theoretic ones; CAMs/rollout where the model has them)."""
        if self._methods is None:
            with self.lock:
                self._methods = self._applicable_methods()
        return self._methods

    def _applicable_methods(self) -> list[str]:
        size = getattr(self.explainer.processor, "size", None) or {}
        side = int(size.get("height", size.get("shortest_edge", 224))) if isinstance(size, dict) else 224
        pixel_values, _ = self.explainer.preprocess([Image.new("RGB", (side, side), (128, 128, 128))])
        game = self.explainer.value_function(pixel_values, [0])
        found = []
        for name, cls in METHODS.items():
            if cls.depends_on_curve:  # game-theoretic: only needs the value function
                found.append(name)
                continue
            try:  # model-specific (one forward/backward): probe it
                get_method(name).attribute(game, CURVES[0])
            except MoXIError:
                continue
            found.append(name)
        return found

    def explainer_for(self, reward: str | None = None, players_grid: int | None = None) -> Explainer:
        """The explainer with this reward and players grid, sharing the loaded model (built once, kept)."""
        base = self.explainer
        reward = reward or base.reward
        if reward not in REWARDS:
            raise MoXIError(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)}")
        rows, cols = base.players.patch_grid
        if players_grid is not None and players_grid not in grid_choices(base) + ([rows] if rows == cols else []):
            raise MoXIError(f"a {players_grid}x{players_grid} players grid does not divide the {rows}x{cols} patch grid")
        key = (reward, players_grid)
        if key not in self._explainers:
            self._explainers[key] = Explainer(base.model, base.processor, base.adapter, reward=reward,
                                              players_grid=players_grid, max_batch_size=base.max_batch_size,
                                              max_tokens=base.max_tokens, name=base.name)
        return self._explainers[key]

    def _check(self, method: str, curve: str, label: int | None) -> None:
        if method not in self.methods:
            raise MoXIError(f"{method} does not apply to this model; choose one of {', '.join(self.methods)}")
        if curve not in CURVES:
            raise MoXIError(f"unknown curve {curve!r}; choose insertion or deletion")
        if label is not None and not 0 <= int(label) < self.explainer.num_labels:
            raise MoXIError(f"label {label} is out of range: the model has {self.explainer.num_labels} classes")

    # -- running -----------------------------------------------------------------------------------

    def _locked(self, work: Callable, progress: ProgressFn, cancel: threading.Event | None):
        if not self.lock.acquire(blocking=False):
            progress(0.0, "waiting for another request on this model")
            self.lock.acquire()
        try:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            if cancel is None:
                return work()
            _running.cancel = cancel
            hook = torch.nn.modules.module.register_module_forward_pre_hook(_raise_if_cancelled)
            try:
                return work()
            finally:
                hook.remove()
                _running.cancel = None
        finally:
            self.lock.release()

    def explain(self, image, method: str = "moxi", curve: str = "insertion", label: int | None = None,
                reward: str | None = None, players_grid: int | None = None, *,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> DemoResult:
        """Explain one image like :meth:`Explainer.explain` and draw what the page shows."""
        progress = progress or _progress_noop
        picture = check_image(image)
        self._check(method, curve, label)
        explainer = self.explainer_for(reward, players_grid)
        progress(0.05, f"explaining with {method}")
        extra = _interaction_options(explainer, method)
        explanation = self._locked(
            lambda: explainer.explain_batch([picture], method, curve, None if label is None else [int(label)],
                                            progress=True, **extra)[0],
            progress, cancel)
        progress(0.9, "drawing")
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        json_path = folder / "explanation.json"
        explanation.to_json(json_path)
        return DemoResult(
            explanation=explanation,
            heatmap=figures.heatmap_figure(explanation, picture),
            curve=figures.curve_figure(explanation),
            interactions=figures.interactions_figure(explanation, picture) if extra else None,
            needed_text=_needed_text(explanation),
            json_path=os.fspath(json_path),
        )

    def compare(self, image, curve: str = "insertion", label: int | None = None, reward: str | None = None,
                players_grid: int | None = None, methods: list[str] | None = None, *,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> tuple[Image.Image, dict]:
        """Every method that applies on one image: the compare sheet (as an image) and its JSON-able record."""
        progress = progress or _progress_noop
        picture = check_image(image)
        methods = list(methods or self.methods)
        for method in methods:
            self._check(method, curve, label)
        explainer = self.explainer_for(reward, players_grid)
        progress(0.05, f"comparing {len(methods)} methods")
        return self._locked(lambda: figures.compare_figure(explainer, picture, methods, curve, label), progress,
                            cancel)


def load_demo_model(model: str | None = None, dtype: str | None = None, device: str | None = None) -> DemoModel:
    """The page's model, loaded once per process: ``model`` is a folder or Hub id (None: the embedded default)."""
    return _load_demo_model(model, dtype, device)


@functools.lru_cache(maxsize=4)
def _load_demo_model(model: str | None, dtype: str | None, device: str | None) -> DemoModel:
    path = os.fspath(default_model_path()) if model is None else model
    explainer = Explainer.from_pretrained(path, dtype=dtype, device=device)
    samples = sample_images(path) if Path(path).is_dir() else []
    title = "the embedded default model (tiny ViT on MNIST digits)" if model is None else model
    return DemoModel(explainer, samples, title)
