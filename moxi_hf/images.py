"""Reading user images (the one loader) and the picture the model sees.

``load_image`` turns a path, an ``http(s)`` URL, a PIL image or an array into the RGB picture a
person sees in an image viewer:

- the EXIF orientation is applied (a phone photo stored sideways is turned upright);
- 16-bit images (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) keep their full range: value / 257, rounded;
- ``I`` (32-bit integer) images: values within 0..255 are kept, else values within 0..65535 are
  divided by 257 (a 16-bit image), else the range min..max is stretched to 0..255;
- ``F`` (32-bit float) images: values within [0, 1] are multiplied by 255, else values within
  0..255 are kept, else min..max is stretched to 0..255;
- transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour) is composited on white;
- every other mode (``L``, ``P``, ``CMYK``, ``1``, ...) is converted by PIL.

Arrays: ``uint8`` as is, ``uint16`` / 257, ``bool`` 0 or 255, other integers within 0..255, floats
within [0, 1] (× 255); the shape is (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MoXIError
from .urls import URL_TIMEOUT, fetch, is_url, public_url

if TYPE_CHECKING:
    import torch

__all__ = ["IMAGE_SUFFIXES", "URL_TIMEOUT", "ImageInput", "check_pixel_values", "decode_image", "image_files",
           "image_name", "load_image", "model_view", "preprocess"]

ImageInput = str | os.PathLike | Image.Image | np.ndarray
#: the files a folder of images stands for (``moxi explain --image DIR``, sample images, local datasets)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa", "La")


def image_files(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(the image files directly in ``folder``, by :data:`IMAGE_SUFFIXES`; its other files), both sorted by name.

    Hidden files (``.DS_Store``, ...) and sub-folders are in neither list.
    """
    images: list[Path] = []
    others: list[Path] = []
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def image_name(image: object) -> str | None:
    """What an explanation records of its input: a path as given, a URL by :func:`~moxi_hf.urls.public_url`
    (no credentials, query or fragment), nothing for pictures and arrays."""
    if is_url(image):
        return public_url(image)
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None


def load_image(image: ImageInput, timeout: float = URL_TIMEOUT, deadline: float | None = None,
               max_bytes: int | None = None) -> Image.Image:
    """An RGB PIL image from a path, an ``http(s)`` URL, a PIL image (any mode) or an array.

    See the module docstring for the conversion rules. For a URL (:func:`moxi_hf.urls.fetch`):
    ``timeout`` seconds per step, ``deadline`` seconds in all and ``max_bytes`` (defaults: 60 s and
    20 MB, or ``$MOXI_URL_DEADLINE`` / ``$MOXI_URL_MAX_BYTES``). A file or URL that cannot be read or
    converted is a :class:`MoXIError` naming it (a URL without its query string).
    """
    name = image_name(image)
    if is_url(image):
        image = decode_image(io.BytesIO(fetch(image, timeout, deadline, max_bytes)), name)
    elif isinstance(image, (str, os.PathLike)):
        image = _open(Path(image))
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif type(image).__module__.startswith("torch"):
        raise MoXIError("a tensor in a list of images: pass processed pixel_values as one (B, 3, H, W) float "
                        "tensor, or each picture as a path, a PIL image or an (H, W, 3) uint8 numpy array")
    elif not isinstance(image, Image.Image):
        raise MoXIError(f"cannot use a {type(image).__name__} as an image; give a path, a URL, a PIL image or an array")
    try:
        if image.width == 0 or image.height == 0:
            raise MoXIError(f"the image is empty ({image.width}x{image.height} pixels)")
        with contextlib.suppress(Exception):  # a damaged EXIF block only costs the orientation
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except MoXIError as error:
        if name is None:
            raise
        raise MoXIError(f"cannot read image {name!r}: {error}") from None


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise MoXIError(f"image file {str(path)!r} does not exist")
    return decode_image(path, str(path))


def decode_image(source: Path | io.BytesIO, name: str) -> Image.Image:
    """The decoded image (any mode) of a file or of encoded bytes; ``name`` (what to call it) is for the error.

    An image larger than PIL's ``Image.MAX_IMAGE_PIXELS`` is refused before its pixels are
    decoded (PIL only warns up to twice that limit; here both are the same refusal).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                opened.load()
                return opened.copy()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise MoXIError(f"cannot read image {name!r}: {_too_large(error)}") from None
    except UnidentifiedImageError:  # Pillow's own text names where it read from (a temporary file, a buffer)
        raise MoXIError(f"cannot read image {name!r}: not an image file, or in a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise MoXIError(f"cannot read image {name!r}: {error}") from None


def _too_large(error: Exception) -> str:
    """Why a decompression bomb is refused: its pixel count (from PIL's message, when it says) and the limit."""
    declared = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(declared.group(1)):,} pixels" if declared else "its size"
    return (f"{size} is more than the limit of {Image.MAX_IMAGE_PIXELS:,} pixels (PIL.Image.MAX_IMAGE_PIXELS): "
            "a possible decompression bomb, not decoded")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise MoXIError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.size == 0:
        raise MoXIError(f"the image array is empty (shape {array.shape})")
    if array.dtype == np.uint16:
        array = _sixteen_to_eight(array)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise MoXIError(f"an integer image array must hold values in 0..255 (uint16: 0..65535), "
                            f"got {array.dtype} in {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise MoXIError("a float image array must hold values in [0, 1] (or pass uint8)")
        array = (array * 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise MoXIError(f"cannot use an array of {array.dtype} as an image")
    return Image.fromarray(array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array)


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) / 257).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255 / (high - low))).astype(np.uint8)


def _single_channel_to_l(image: Image.Image) -> Image.Image:
    """``I;16*``, ``I`` or ``F`` to an 8-bit ``L`` image by the rules in the module docstring."""
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT:
        return Image.fromarray(_sixteen_to_eight(values))
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise MoXIError(f"the {image.mode!r} image holds NaN or infinite values")
    low, high = values.min(), values.max()
    if image.mode == "F" and low >= 0 and high <= 1:
        eight = np.round(values * 255).astype(np.uint8)
    elif low >= 0 and high <= 255:
        eight = np.round(values).astype(np.uint8)
    elif image.mode == "I" and low >= 0 and high <= 65535:
        eight = _sixteen_to_eight(values)
    else:
        eight = _stretch(values)
    return Image.fromarray(eight)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT or image.mode in ("I", "F"):
        return _single_channel_to_l(image).convert("RGB")
    if image.mode in _TRANSPARENT or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise MoXIError(f"cannot convert a {image.mode!r} image to RGB: {error}") from None


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


def model_view(image: ImageInput, processor) -> np.ndarray:
    """The picture the model sees, (H, W, 3) uint8: resized and cropped exactly as ``processor`` does.

    The processor itself is run with rescaling and normalisation switched off, so every resize rule
    (``size`` height/width, ``shortest_edge``, ``crop_pct``, ``do_center_crop``/``crop_size``) is the
    processor's own; the model's pixel_values are this view × rescale_factor, normalised. Without a
    processor the RGB image is returned as is.
    """
    image = load_image(image)
    if processor is None:
        return np.asarray(image, dtype=np.uint8).copy()
    try:
        view = processor(images=[image], do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    except Exception as error:  # noqa: BLE001 - processors raise many kinds
        raise MoXIError(f"the image processor could not process the image: {error}") from None
    view = np.asarray(view)[0]
    if view.ndim != 3 or view.shape[0] != 3:
        raise MoXIError(f"the image processor gave a view of shape {view.shape}, expected (3, H, W)")
    return np.clip(np.round(view.astype(np.float64)), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int | None = None) -> torch.Tensor:
    """``pixel_values`` checked as a processed batch (B, C, H, W) of floats; a clear error otherwise."""
    import torch

    expected = f"(B, {num_channels or 3}, H, W)"
    if not torch.is_floating_point(pixel_values):
        raise MoXIError(
            f"a {pixel_values.dtype} tensor is not processed pixel_values (float, shape {expected}); "
            "pass the picture as a PIL image or an (H, W, 3) uint8 numpy array "
            "(e.g. tensor.permute(1, 2, 0).numpy()), or run the model's image processor first"
        )
    if pixel_values.ndim != 4:
        raise MoXIError(f"pixel_values must have shape {expected} (or (C, H, W) for one image), "
                        f"got {tuple(pixel_values.shape)}")
    if 0 in pixel_values.shape:
        raise MoXIError(f"pixel_values is empty: shape {tuple(pixel_values.shape)}, expected {expected} with B, H, W >= 1")
    if num_channels is not None and pixel_values.shape[1] != num_channels:
        raise MoXIError(f"pixel_values must have shape {expected}: the model takes {num_channels} channels, "
                        f"got {tuple(pixel_values.shape)}")
    if not torch.isfinite(pixel_values).all():
        raise MoXIError("pixel_values hold NaN or infinite values")
    return pixel_values
