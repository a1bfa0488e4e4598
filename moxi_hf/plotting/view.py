"""Pictures for figures: processed pixel values back to a picture; the model's view (re-exported from images)."""

from __future__ import annotations

import numpy as np

from ..images import model_view

__all__ = ["model_view", "pixels_to_picture"]


def pixels_to_picture(pixel_values, processor=None) -> np.ndarray:
    """Processed pixel values (C, H, W), normalised -> (H, W, 3) float in [0, 1].

    The processor's ``image_mean``/``image_std`` undo the normalisation; without them the values
    are stretched to [0, 1]. One channel is repeated to three.
    """
    import torch

    image = torch.as_tensor(pixel_values).float().cpu()
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is not None and std is not None and len(mean) == image.shape[0] == len(std):
        image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
    image = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
