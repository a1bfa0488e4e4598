"""The image loader (modes, EXIF, URLs, arrays) and the model's input view."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.convnext.image_processing_pil_convnext import (
    ConvNextImageProcessorPil,
)
from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from helpers import serve_folder
from moxi_hf import Explainer, MoXIError
from moxi_hf.images import load_image, model_view

MNIST = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist"


def gray(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(load_image(image))
    assert (rgb == rgb[..., :1]).all()
    return rgb[..., 0]


# -- modes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,dtype", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_sixteen_bit_images_keep_their_full_range(mode, dtype):
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    image = Image.frombytes(mode, (64, 64), ramp.astype(dtype).tobytes())
    eight = gray(image)
    np.testing.assert_array_equal(eight, np.round(ramp / 257).astype(np.uint8))
    # Clipping (what convert("RGB") does) would saturate almost the whole ramp.
    assert (eight == 255).mean() < 0.01


def test_sixteen_bit_png_file_is_scaled(tmp_path):
    values = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "x.png")
    np.testing.assert_array_equal(gray(tmp_path / "x.png"), np.arange(256).reshape(16, 16))


def test_int32_images_by_range():
    small = np.array([[0, 7], [200, 255]], np.int32)
    np.testing.assert_array_equal(gray(Image.fromarray(small, "I")), small)
    sixteen = np.array([[0, 257], [1000, 65535]], np.int32)
    np.testing.assert_array_equal(gray(Image.fromarray(sixteen, "I")), [[0, 1], [4, 255]])
    signed = np.array([[-100, 0], [100, 155]], np.int32)  # min..max: -100..155
    np.testing.assert_array_equal(gray(Image.fromarray(signed, "I")), [[0, 100], [200, 255]])


def test_float_images_by_range():
    unit = np.array([[0, 0.5], [0.25, 1]], np.float32)
    np.testing.assert_array_equal(gray(Image.fromarray(unit, "F")), [[0, 128], [64, 255]])
    bytes_range = np.array([[0, 2.4], [100.6, 255]], np.float32)
    np.testing.assert_array_equal(gray(Image.fromarray(bytes_range, "F")), [[0, 2], [101, 255]])
    wide = np.array([[-1, 0], [1, 3]], np.float32)
    np.testing.assert_array_equal(gray(Image.fromarray(wide, "F")), [[0, 64], [128, 255]])
    with pytest.raises(MoXIError, match="NaN"):
        load_image(Image.fromarray(np.array([[np.nan, 1]], np.float32), "F"))


def test_alpha_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgb = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[1, 1]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :5] = 255  # a white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display turned 90° clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=100, exif=exif.tobytes())
    upright = np.asarray(load_image(tmp_path / "photo.jpg"))
    assert upright.shape == (20, 10, 3)
    assert upright[:4].min() > 200 and upright[-4:].max() < 50  # the stripe is now on top


# -- arrays -------------------------------------------------------------------------------------


def test_arrays_by_dtype():
    np.testing.assert_array_equal(gray(np.array([[0, 65535]], np.uint16)), [[0, 255]])
    np.testing.assert_array_equal(gray(np.array([[0, 200]], np.int64)), [[0, 200]])
    np.testing.assert_array_equal(gray(np.array([[False, True]])), [[0, 255]])
    with pytest.raises(MoXIError, match=r"0\.\.255"):
        load_image(np.array([[0, 300]], np.int64))
    with pytest.raises(MoXIError, match=r"empty \(shape \(0, 0\)\)"):
        load_image(np.zeros((0, 0), np.uint8))
    with pytest.raises(MoXIError, match=r"empty \(0x0 pixels\)"):
        load_image(Image.new("RGB", (0, 0)))


# -- URLs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(folder / "image.png")
    (folder / "not_an_image.png").write_bytes(b"hello")

    with serve_folder(folder) as url:
        yield url


def test_url_images_are_fetched(image_server):
    np.testing.assert_array_equal(np.asarray(load_image(f"{image_server}/image.png")),
                                  np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    with pytest.raises(MoXIError, match=r"could not fetch image .*missing\.png.*HTTP 404"):
        load_image(f"{image_server}/missing.png")
    with pytest.raises(MoXIError, match=r"cannot read image .*not_an_image\.png"):
        load_image(f"{image_server}/not_an_image.png")


def test_url_timeout_and_refused_connection():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        start = time.perf_counter()
        with pytest.raises(MoXIError, match=r"no answer within 0\.5 s"):
            load_image(f"http://127.0.0.1:{silent.getsockname()[1]}/image.png", timeout=0.5)
        assert time.perf_counter() - start < 5
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(MoXIError, match="could not fetch image .*refused"):
        load_image(f"http://127.0.0.1:{closed_port}/image.png")


# -- the model's view ---------------------------------------------------------------------------


def painted(height: int, width: int, rows: slice, cols: slice) -> Image.Image:
    pixels = np.full((height, width, 3), 90, np.uint8)
    pixels[rows, cols] = (250, 20, 160)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("processor,cell_pixels", [
    # shortest edge 20 / crop_pct 0.5: resize 80x120 -> 40x60, centre crop 20x20 at (10, 20); 4-px patches.
    (ConvNextImageProcessorPil(size={"shortest_edge": 20}, crop_pct=0.5), lambda r, c: (20 + 8 * r, 40 + 8 * c)),
    # resize to 40x60, then centre crop 20x20 at (10, 20).
    (DeiTImageProcessorPil(size={"height": 40, "width": 60}, crop_size={"height": 20, "width": 20}),
     lambda r, c: (20 + 8 * r, 40 + 8 * c)),
])
def test_model_view_puts_a_patch_on_its_own_pixels(processor, cell_pixels):
    r, c = 3, 1
    top, left = cell_pixels(r, c)  # the 8x8 original pixels of patch (r, c)
    image = painted(80, 120, slice(top, top + 8), slice(left, left + 8))
    view = model_view(image, processor)
    assert view.shape == (20, 20, 3)
    cell = view[4 * r:4 * r + 4, 4 * c:4 * c + 4].astype(int)
    assert np.abs(cell[1:3, 1:3] - (250, 20, 160)).max() <= 10  # the cell's inner pixels are the block
    outside = np.ones((20, 20), bool)
    outside[4 * r - 1:4 * r + 5, 4 * c - 1:4 * c + 5] = False
    assert np.abs(view[outside].astype(int) - 90).max() <= 10  # and nothing else is
    # Stretching the whole original to 20x20 (no crop) would put the block elsewhere.
    stretched = np.asarray(image.resize((20, 20), Image.BILINEAR)).astype(int)
    assert np.abs(stretched[4 * r + 1:4 * r + 3, 4 * c + 1:4 * c + 3] - (250, 20, 160)).max() > 50
    # The model's pixel_values are this view, rescaled and normalised.
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"][0]
    mean, std = torch.tensor(processor.image_mean)[:, None, None], torch.tensor(processor.image_std)[:, None, None]
    expected = (torch.from_numpy(view).permute(2, 0, 1).double() * processor.rescale_factor - mean) / std
    torch.testing.assert_close(pixel_values.double(), expected, atol=1e-5, rtol=0)


def test_model_view_without_crop_is_the_resized_image():
    image = painted(30, 50, slice(0, 10), slice(0, 10))
    view = model_view(image, ViTImageProcessorPil(size={"height": 16, "width": 16}))
    np.testing.assert_array_equal(view, np.asarray(image.resize((16, 16), Image.BILINEAR)))
    np.testing.assert_array_equal(model_view(image, None), np.asarray(image))


def test_every_view_is_the_one_model_view(vit_dir, tmp_path):
    """Explanations, the compare sheet and the plotting module all show images.model_view's picture."""
    import shutil

    from moxi_hf import plotting
    from moxi_hf.compare import compare_methods

    checkpoint = tmp_path / "cropping"
    shutil.copytree(vit_dir, checkpoint)
    DeiTImageProcessorPil(size={"height": 40, "width": 60}, crop_size={"height": 16, "width": 16}).save_pretrained(checkpoint)
    explainer = Explainer.from_pretrained(str(checkpoint))
    image = painted(80, 120, slice(20, 28), slice(40, 48))
    expected = model_view(image, explainer.processor)
    assert plotting.model_view is model_view
    explanation = explainer.explain(image, method="self-shapley")
    np.testing.assert_array_equal(np.asarray(explanation.display_image), expected)
    result = compare_methods(explainer, [image], ["self-shapley"], "insertion")[0]
    np.testing.assert_array_equal(np.asarray(result["display_image"]), expected)


# -- the 16-bit copy of a sample digit ----------------------------------------------------------


def test_sixteen_bit_copy_of_a_digit_is_explained_like_the_original(tmp_path):
    original = min((MNIST / "samples").glob("*.png"))
    with Image.open(original) as opened:
        eight = np.asarray(opened.convert("L"))
    copy = tmp_path / "digit16.png"
    Image.fromarray(eight.astype(np.uint16) * 257).save(copy)
    with Image.open(copy) as opened:
        assert opened.mode.startswith("I")
        clipped = np.asarray(opened.convert("RGB"))
    explainer = Explainer.from_pretrained(MNIST)
    for method in ("moxi", "self-shapley"):
        first, second = explainer.explain_batch([original, copy], method=method)
        assert first.order == second.order and first.label == second.label
        assert first.curve_probabilities == second.curve_probabilities
    # What convert("RGB") gives (clipping) is another picture.
    assert (clipped == 255).mean() > 2 * (eight == 255).mean()


@pytest.mark.parametrize("side", [40, 50])  # over PIL's pixel limit (it warns), over twice it (it refuses)
def test_an_image_over_the_pixel_limit_is_refused_without_a_warning(tmp_path, monkeypatch, side):
    path = tmp_path / "big.png"
    Image.new("L", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(MoXIError, match=f"cannot read image .*big.png.*{side * side:,} pixels"):
        load_image(path)
