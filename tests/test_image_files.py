"""Image files a user points at: decompression bombs, NaN TIFFs and unsupported files in a folder."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moxi_hf import MoXIError
from moxi_hf.cli import main
from moxi_hf.images import load_image

SAMPLES = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist" / "samples"


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with no pixel data (a few dozen bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def nan_tiff(path: Path) -> Path:
    Image.fromarray(np.array([[np.nan, 1.0], [0.5, 0.25]], np.float32), "F").save(path)
    return path


def test_a_decompression_bomb_is_refused_with_its_name(tmp_path):
    bomb = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(MoXIError, match=r"^cannot read image '.*bomb\.png': 900,000,000 pixels is more .*decompression bomb"):
        load_image(bomb)


def test_an_image_above_the_warning_limit_is_refused_not_warned(tmp_path, monkeypatch):
    """Between PIL's warning and error limits PIL only warns; the loader refuses it the same way."""
    picture = tmp_path / "big.png"
    Image.new("L", (40, 40)).save(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the limit, under twice it
    with pytest.raises(MoXIError, match=r"^cannot read image '.*big\.png': 1,600 pixels is more than the limit of 1,000 pixels"):
        load_image(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's documented switch: no limit
    assert load_image(picture).size == (40, 40)


def test_the_nan_tiff_message_names_the_file(tmp_path):
    with pytest.raises(MoXIError, match=r"^cannot read image '.*nan\.tif': .*NaN"):
        load_image(nan_tiff(tmp_path / "nan.tif"))


def test_a_bomb_and_a_nan_tiff_among_good_images_are_skipped_by_name(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    good = min(SAMPLES.glob("*.png"))
    shutil.copy(good, folder / "good.png")
    png_header_only(folder / "bomb.png", 30000, 30000)
    nan_tiff(folder / "nan.tif")
    out = tmp_path / "out"
    code = main(["explain", "--quiet", "--image", str(folder), "--method", "self-shapley", "--output-dir", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    skipped = [line for line in err if line.startswith("moxi: skipping an image: ")]
    assert len(skipped) == 2
    assert any("bomb.png" in line and "decompression bomb" in line for line in skipped)
    assert any("nan.tif" in line and "NaN" in line for line in skipped)
    assert err[-1] == "moxi: error: 2 of 3 images could not be read (listed above); the others are explained"
    assert json.loads((out / "good" / "explanation.json").read_text())["image"] == "good.png"


# -- which files a folder stands for --------------------------------------------------------------


def test_one_list_of_image_suffixes_with_tiff():
    from moxi_hf.images import IMAGE_SUFFIXES

    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff"} <= set(IMAGE_SUFFIXES)
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    assert set(IMAGE_SUFFIXES) <= set(ImageFolder.EXTENSIONS)  # a local dataset folder reads the same files


def test_image_files_splits_a_folder(tmp_path):
    from moxi_hf.images import image_files

    for name in ("b.TIF", "a.png", "notes.txt", ".DS_Store", "scan.pdf"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    images, others = image_files(tmp_path)
    assert [p.name for p in images] == ["a.png", "b.TIF"]
    assert [p.name for p in others] == ["notes.txt", "scan.pdf"]  # hidden files and folders are not listed


def test_a_tiff_in_a_folder_is_explained_and_other_files_are_listed_once(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    digit = Image.open(min(SAMPLES.glob("*.png")))
    digit.save(folder / "digit.tif")
    digit.save(folder / "digit2.png")
    (folder / "notes.txt").write_text("my notes")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4")
    out = tmp_path / "out"
    code = main(["explain", "--quiet", "--image", str(folder), "--method", "self-shapley", "--output-dir", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 0, err
    assert json.loads((out / "digit" / "explanation.json").read_text())["image"] == "digit.tif"
    assert (out / "digit2" / "explanation.json").is_file()
    listed = [line for line in err if "notes.txt" in line]
    assert len(listed) == 1 and "scan.pdf" in listed[0] and ".tif" in listed[0]
    assert listed[0].startswith("moxi: skipping 2 files that are not images")


def test_a_folder_without_images_names_what_it_holds(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    code = main(["explain", "--quiet", "--image", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "has no image files" in err and ".tiff" in err and "notes.txt" in err
