"""The result of explaining one image: order, scores, heatmap, patches needed; JSON and a plot."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """One image's explanation over a grid of players (row-major).

    ``order``: players most important first (all of them, or the players needed when the
    method stopped early). ``scores``: one per player where the method has them. ``heatmap``:
    rows × cols, the "patches needed" ramp (DESIGN.md §1). ``curve_probabilities`` /
    ``curve_predictions``: p(label) and the predicted class after k = 0..len(order) players
    of ``order`` were inserted (insertion) or deleted (deletion).
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
    options: dict = field(default_factory=dict)
    #: ``{total, self, interaction}`` along ``order`` (MoXI with ``interactions=True``; docs/interactions.md).
    gains: dict | None = None
    #: ``{players: [K ids], matrix: K×K}``: I(i, j) among the first K players of ``order`` (kind: ``curve``).
    interactions: dict | None = None
    #: the RGB image that was explained (not serialised), used by :meth:`plot`.
    pil_image: object | None = field(default=None, repr=False, compare=False)

    @property
    def n_players(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def heatmap_array(self) -> np.ndarray:
        return np.asarray(self.heatmap, dtype=np.float32)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pil_image"}
        data["grid"] = list(self.grid)
        data["patch_grid"] = list(self.patch_grid) if self.patch_grid else None
        return json.loads(json.dumps(data))  # plain JSON types only

    @classmethod
    def from_dict(cls, data: dict) -> Explanation:
        known = {f.name for f in fields(cls)} - {"pil_image"}
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
        """Overlay the heatmap on the image; write a PNG to ``path`` when given. Returns the figure."""
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        image = image if image is not None else self.pil_image
        own_figure = ax is None
        if own_figure:
            figure, ax = plt.subplots(figsize=(4, 4.3))
        else:
            figure = ax.figure
        heat = self.heatmap_array
        if image is not None:
            picture = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
            height, width = picture.shape[:2]
            ax.imshow(picture, interpolation="nearest", extent=(0, width, height, 0))  # same extent as the heat
            ax.imshow(heat, cmap="jet", alpha=0.5, extent=(0, width, height, 0), interpolation="nearest",
                      vmin=0, vmax=max(float(heat.max()), 1.0))
        else:
            ax.imshow(heat, cmap="jet", interpolation="nearest", vmin=0, vmax=max(float(heat.max()), 1.0))
        ax.set_axis_off()
        label = self.label_name if self.label_name is not None else str(self.label)
        ax.set_title(title or f"{self.method} ({self.curve})\nlabel {label}: {self.patches_needed} players needed",
                     fontsize=9)
        if own_figure and path is not None:
            figure.tight_layout()
            figure.savefig(path, dpi=120)
            plt.close(figure)
        return figure

    def plot_interactions(self, path: str | os.PathLike | None = None, image=None, top_pairs: int = 8):
        """The interaction map over the image and the gain split along the order; a PNG to ``path``. Returns the figure."""
        from .plotting.interactions import interactions_figure

        image = image if image is not None else self.pil_image
        figure = interactions_figure(self, None if image is None else np.asarray(image.convert("RGB") if hasattr(
            image, "convert") else image), top_pairs=top_pairs)
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure

    def __post_init__(self):
        self.grid = tuple(self.grid)
        if self.patch_grid is not None:
            self.patch_grid = tuple(self.patch_grid)

