"""The model's input view: the picture after the processor's resize and crop, as the model saw it."""

from __future__ import annotations

import numpy as np

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


def model_view(image, processor):
    """The RGB PIL picture the model sees for ``image`` (path, PIL image or array): ``processor``'s resize and crop."""
    from PIL import Image

    from ..images import preprocess

    pixel_values, _ = preprocess(processor, [image])
    return Image.fromarray((pixels_to_picture(pixel_values[0], processor) * 255).round().astype(np.uint8))
