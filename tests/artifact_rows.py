"""Synthetic artifact rows and checks shared by the artifact and Hub tests."""

from __future__ import annotations

import random

import numpy as np

from moxi_hf.artifacts import ROW_COLUMNS

LABELS = ["cat", "dog", "bird"]
METHODS = ["moxi", "gradcam"]


def make_rows(n_images: int = 3, grid: tuple[int, int] = (2, 3), seed: int = 0) -> list[dict]:
    """Synthetic rows with the fixed schema (curves over k = 0..P)."""
    rng = random.Random(seed)
    players = grid[0] * grid[1]
    rows = []
    for index in range(n_images):
        for method in METHODS:
            for curve in ("insertion", "deletion"):
                order = list(range(players))
                rng.shuffle(order)
                accuracy = [float(rng.random() > 0.5) for _ in range(players + 1)]
                # quarters (exact in the float32 columns), not drawn from rng: the other columns stay as they were
                alone = [((3 * player + index) % 9 - 4) / 4 for player in range(players)]
                together = [((5 * player + 2 * index) % 7 - 3) / 4 for player in range(players)]
                pair = (index - 1) / 4
                rows.append({
                    "dataset_index": 10 + index,
                    "image": f"img{index}.png",
                    "label": index % len(LABELS),
                    "predicted": (index + 1) % len(LABELS),
                    "method": method,
                    "curve": curve,
                    "order": order,
                    "scores": None if method == "moxi" else [rng.uniform(-1, 1) for _ in range(players)],
                    "heatmap": [float(rng.randint(0, 4)) for _ in range(players)],
                    "patches_needed": rng.randint(1, players),
                    "accuracy_curve": accuracy,
                    "confidence_curve": [rng.random() for _ in range(players + 1)],
                    "grid_rows": grid[0],
                    "grid_cols": grid[1],
                    "gains": {"total": [a + b for a, b in zip(alone, together)], "self": alone,
                              "interaction": together} if method == "moxi" else None,
                    "interactions": {"players": order[:2], "matrix": [[0.0, pair], [pair, 0.0]]}
                    if method == "moxi" else None,
                })
    return rows


def curves_plot():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1])
    return figure


CONFIG = {"model": "google/vit-base-patch16-224", "dataset": "ILSVRC/imagenet-1k", "split": "validation",
          "methods": METHODS, "curves": ["insertion", "deletion"], "num_images": 3, "max_tokens": 4096}



def assert_rows_equal(loaded, rows):
    assert len(loaded) == len(rows)
    for got, want in zip(loaded, rows):
        for name in ROW_COLUMNS:
            if name in ("scores", "heatmap", "accuracy_curve", "confidence_curve"):
                np.testing.assert_allclose(got[name], want[name] or [], rtol=1e-6, atol=1e-7)
            else:
                assert got[name] == want.get(name), name
