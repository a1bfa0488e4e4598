"""The result of explaining one image: order, scores, heatmap, patches needed; JSON and a plot."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .labels import label_text

__all__ = ["Explanation", "ExplanationSet", "explanations_of"]

_NOT_SERIALISED = frozenset({"pil_image", "display_image"})
#: written only for zero-shot explanations (a classifier's JSON has no such keys)
_ZERO_SHOT_ONLY = frozenset({"candidate_labels", "hypothesis_template"})


@dataclass
class Explanation:
    """One image's explanation over a grid of players (row-major).

    ``order``: players most important first (all of them, or the players needed when the
    method stopped early). ``scores``: one per player where the method has them. ``heatmap``:
    rows × cols, the "patches needed" ramp. ``curve_probabilities`` /
    ``curve_predictions``: p(label) and the predicted class after k = 0..len(order) players
    of ``order`` were inserted (insertion) or deleted (deletion). ``label_name``/``predicted_name``:
    the classes' names (:meth:`moxi_hf.Explainer.label_name`).
    """

    method: str
    curve: str
    label: int
    order: list[int]
    heatmap: list[list[float]]
    patches_needed: int
    grid: tuple[int, int]
    scores: list[float] | None = None
    label_name: str | None = None
    predicted: int | None = None
    curve_probabilities: list[float] | None = None
    curve_predictions: list[int] | None = None
    model: str | None = None
    reward: str | None = None
    masking: str | None = None
    patch_grid: tuple[int, int] | None = None
    image: str | None = None
    predicted_name: str | None = None
    options: dict = field(default_factory=dict)
    #: choices the method made on its own (e.g. Grad-CAM's ``cam_layer``, the layer it read).
    settings: dict = field(default_factory=dict)
    #: ``{total, self, interaction}`` along ``order`` (MoXI with ``interactions=True``; docs/interactions.md).
    gains: dict | None = None
    #: ``{players: [K ids], matrix: K×K}``: I(i, j) among the first K players of ``order`` (kind: ``curve``).
    interactions: dict | None = None
    #: a zero-shot model's candidate labels (``label`` indexes them) and prompt template(s); None for a classifier.
    candidate_labels: list[str] | None = None
    hypothesis_template: str | list[str] | None = None
    #: the RGB image that was explained (not serialised).
    pil_image: object | None = field(default=None, repr=False, compare=False)
    #: the picture the model saw (resized and cropped by its processor; not serialised), drawn by :meth:`plot`.
    display_image: object | None = field(default=None, repr=False, compare=False)

    @property
    def n_players(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def label_text(self) -> str:
        """The explained class as people read it (:func:`moxi_hf.labels.label_text`): ``3`` or ``281 ("tabby cat")``."""
        return label_text(self.label, self.label_name)

    @property
    def predicted_text(self) -> str:
        """The predicted class on the whole image, written like :attr:`label_text` (``?`` when unknown)."""
        return label_text(self.predicted, self.predicted_name)

    @property
    def players_text(self) -> str:
        """All the players: ``49 patches`` (one player per patch) or ``16 players (2x2 patches each)``."""
        rows, cols = self.grid
        if self.patch_grid is None or tuple(self.patch_grid) == tuple(self.grid):
            return f"{self.n_players} patch" + ("es" if self.n_players != 1 else "")
        group = (self.patch_grid[0] // rows, self.patch_grid[1] // cols)
        return f"{self.n_players} player{'s' if self.n_players != 1 else ''} ({group[0]}x{group[1]} patches each)"

    @property
    def needed_text(self) -> str:
        """What ``patches_needed`` says, in one sentence: ``2 of 49 patches needed to predict 3``.

        Deletion: the players removed until the label is no longer predicted; when the whole image is not
        predicted as the label to begin with, it says so (naming the prediction) instead of counting.
        """
        label, total = self.label_text, self.players_text
        if self.curve == "insertion":
            if not self.reached:
                return f"{label} is never predicted, not even with all {total}"
            return f"{self.patches_needed} of {total} needed to predict {label}"
        if self.predicted is not None and self.predicted != self.label:
            return (f"{label} is not predicted to begin with (the model predicts {self.predicted_text}), "
                    "so no patch needs removing")
        if not self.reached:
            return f"the prediction stays {label} even with all {total} removed"
        return f"{self.patches_needed} of {total} removed to change the prediction from {label}"

    @property
    def reached(self) -> bool:
        """Whether the order reached the curve's goal: after ``patches_needed`` players the label is
        predicted (insertion) or no longer predicted (deletion)."""
        predictions = self.curve_predictions or []
        k = self.patches_needed
        if k >= len(predictions):
            return False
        hit = predictions[k] == self.label
        return hit if self.curve == "insertion" else not hit

    @property
    def heatmap_array(self) -> np.ndarray:
        return np.asarray(self.heatmap, dtype=np.float32)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SERIALISED
                and not (f.name in _ZERO_SHOT_ONLY and getattr(self, f.name) is None)}
        data["grid"] = list(self.grid)
        data["patch_grid"] = list(self.patch_grid) if self.patch_grid else None
        return json.loads(json.dumps(data))  # plain JSON types only

    @classmethod
    def from_dict(cls, data: dict) -> Explanation:
        known = {f.name for f in fields(cls)} - _NOT_SERIALISED
        values = {key: value for key, value in data.items() if key in known}
        values["grid"] = tuple(values["grid"])
        if values.get("patch_grid"):
            values["patch_grid"] = tuple(values["patch_grid"])
        return cls(**values)

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> Explanation:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def plot(self, path: str | os.PathLike | None = None, image=None, ax=None, title: str | None = None):
        """The heatmap over the model's view of the image (or ``image``); a PNG at ``path``. Returns the figure.

        Built on ``matplotlib.figure.Figure``: the notebook's or script's backend is never switched.
        """
        from .plotting import plot_explanation, save_figure

        figure = plot_explanation(self, image=image, ax=ax, title=title)
        if path is not None and ax is None:
            save_figure(figure, path)
        return figure

    def __repr__(self) -> str:
        rows, cols = self.grid
        image = f", image={self.image!r}" if self.image else ""
        return (f"Explanation(method={self.method!r}, curve={self.curve!r}, label={self.label}, "
                f"patches_needed={self.patches_needed}/{rows * cols}, grid={rows}x{cols}{image})")

    def _repr_png_(self) -> bytes:
        """Shown by notebooks: the heatmap over the image."""
        from .plotting import png_bytes

        return png_bytes(self.plot(), dpi=80)

    def plot_interactions(self, path: str | os.PathLike | None = None, image=None, top_pairs: int = 8):
        """The interaction map over the model's view of the image (or ``image``) and the gain split along
        the order; a PNG at ``path``. Returns the figure."""
        from .plotting import save_figure
        from .plotting.heatmap import explanation_picture
        from .plotting.interactions import interactions_figure

        figure = interactions_figure(self, explanation_picture(self, image), top_pairs=top_pairs)
        if path is not None:
            save_figure(figure, path)
        return figure

    def __post_init__(self):
        self.grid = tuple(self.grid)
        if self.patch_grid is not None:
            self.patch_grid = tuple(self.patch_grid)


@dataclass
class ExplanationSet:
    """Several methods × curves on the same images (:meth:`moxi_hf.Explainer.explain_methods`).

    ``explanations[(method, curve)]``: one :class:`Explanation` per image, in input order;
    ``labels``/``predicted``: the class explained and the prediction, per image.
    """

    methods: list[str]
    curves: list[str]
    labels: list[int]
    predicted: list[int]
    explanations: dict[tuple[str, str], list[Explanation]]

    def __getitem__(self, key: tuple[str, str]) -> list[Explanation]:
        return self.explanations[key]

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> dict[tuple[str, str], Explanation]:
        """``(method, curve)`` -> the explanation of image ``index``."""
        return {key: explanations[index] for key, explanations in self.explanations.items()}


def explanations_of(explainer, game, attribution, measured, method, curve: str, predicted, names, pil_images,
                    views=None) -> list[Explanation]:
    """One :class:`Explanation` per image of ``game`` from a method's ``attribution`` and the curve ``measured``
    along its order ((p(label), predicted class), each (B, K + 1)); ``explainer`` names the labels and model."""
    from .metrics.curves import heatmap_from_order, patches_needed

    order, lengths = attribution.order, attribution.lengths
    probabilities, predictions = measured
    grid = explainer.players.grid
    options = method.option_values()
    explanations = []
    for index in range(game.n_images):
        length = int(lengths[index]) if lengths is not None else order.shape[1]
        image_order = order[index, :length]
        image_predictions = predictions[index, : length + 1]
        label = int(game.labels[index])
        needed = patches_needed(image_predictions, label, curve, game.n_players)
        heat = heatmap_from_order(image_order, needed, game.n_players).view(*grid)
        guess = int(predicted[index])
        explanations.append(Explanation(
            method=method.name,
            curve=curve,
            label=label,
            label_name=explainer.label_name(label),
            candidate_labels=explainer.candidate_labels,
            hypothesis_template=explainer.hypothesis_template,
            predicted=guess,
            predicted_name=explainer.label_name(guess),
            order=image_order.tolist(),
            scores=None if attribution.scores is None else attribution.scores[index].tolist(),
            heatmap=heat.tolist(),
            patches_needed=needed,
            grid=grid,
            patch_grid=explainer.players.patch_grid,
            curve_probabilities=probabilities[index, : length + 1].tolist(),
            curve_predictions=image_predictions.tolist(),
            model=explainer.name,
            reward=explainer.reward,
            masking=explainer.adapter.masking,
            image=names[index],
            options=options,
            settings=dict(attribution.settings),
            pil_image=pil_images[index],
            display_image=views[index] if views is not None else None,
        ))
    return explanations
