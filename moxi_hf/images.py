"""Reading user images: paths, PIL images or arrays, any mode, converted to RGB."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import MoXIError

__all__ = ["ImageInput", "load_image", "preprocess"]

ImageInput = str | os.PathLike | Image.Image | np.ndarray


def load_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a path, a PIL image (any mode: L, P, RGBA, CMYK, ...) or an (H, W[, C]) array."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise MoXIError(f"image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise MoXIError(f"cannot read image {str(path)!r}: {error}") from None
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise MoXIError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
        if array.dtype != np.uint8:
            if array.size and (array.min() < 0 or array.max() > 1):
                raise MoXIError("a float image array must hold values in [0, 1] (or pass uint8)")
            array = (array * 255).round().astype(np.uint8)
        image = Image.fromarray(array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array)
    elif not isinstance(image, Image.Image):
        raise MoXIError(f"cannot use a {type(image).__name__} as an image; give a path, a PIL image or an array")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def preprocess(processor, images: list[ImageInput]) -> tuple[torch.Tensor, list[Image.Image]]:
    """(pixel_values (B, C, H, W), the RGB images) through the model's image processor."""
    if processor is None:
        raise MoXIError("this explainer has no image processor; pass pixel_values instead of images")
    pil_images = [load_image(image) for image in images]
    try:
        pixel_values = processor(images=pil_images, return_tensors="pt")["pixel_values"]
    except Exception as error:  # noqa: BLE001 - processors raise many kinds
        raise MoXIError(f"the image processor could not process the image: {error}") from None
    return pixel_values, pil_images
