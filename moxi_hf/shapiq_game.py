"""The game of one image as a ``shapiq.Game``: every shapiq approximator and index runs on our value function.

shapiq is an optional extra (``pip install 'moxi-hf[shapiq]'``); this module is imported only by
:meth:`moxi_hf.Explainer.game`.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import MoXIError
from .value import ValueFunction

try:
    from shapiq import Game
except ImportError:
    raise MoXIError("the shapiq game needs shapiq: pip install 'moxi-hf[shapiq]'") from None

__all__ = ["ImageGame", "image_game"]


class ImageGame(Game):
    """v(S) of one image of a :class:`~moxi_hf.value.ValueFunction`, centred as shapiq expects.

    Calling the game gives v(S) − v(∅) (``normalization_value`` = v(∅)); :meth:`value_function`
    gives v(S) itself. Coalitions: (C, P) bool numpy arrays, player i = player i of the players
    grid (row-major). Each call is one batched call of the value function.
    """

    def __init__(self, values: ValueFunction, image_index: int = 0):
        if not 0 <= image_index < values.n_images:
            raise MoXIError(f"image_index {image_index} is out of range: the value function holds {values.n_images} images")
        self.values = values
        self.image_index = image_index
        empty = float(self._values(np.zeros((1, values.n_players), dtype=bool))[0])
        super().__init__(values.n_players, normalize=True, normalization_value=empty)

    def _values(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = torch.from_numpy(np.asarray(coalitions, dtype=bool))
        owner = torch.full((coalitions.shape[0],), self.image_index, dtype=torch.long)
        with torch.no_grad():
            return self.values(coalitions, owner).double().numpy()

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        """v(S) (C,) float64 for coalitions (C, P) bool."""
        return self._values(coalitions)


def image_game(explainer, image, label: int | None = None) -> ImageGame:
    """The game of one image (path, PIL image, array or processed pixel_values (C, H, W)) for ``label``
    (default: the model's prediction), with the explainer's removal, reward and players."""
    if isinstance(image, torch.Tensor):
        pixel_values, _ = explainer.preprocess(image.unsqueeze(0) if image.ndim == 3 else image)
        if pixel_values.shape[0] != 1:
            raise MoXIError(f"a game is of one image, got pixel_values of {pixel_values.shape[0]}")
    else:
        pixel_values, _ = explainer.preprocess([image])
    predicted = explainer.predict(pixel_values)
    labels = explainer.resolve_labels([label], predicted)
    return ImageGame(explainer.value_function(pixel_values, labels))
