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
    with Image.open(min(SAMPLES.glob("*.png"))) as digit:
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


# -- URLs: what is recorded, how long and how much is read ------------------------------------------


def test_public_url_keeps_scheme_host_and_path_only():
    from moxi_hf.urls import public_url

    assert public_url("http://bob:secret@Example.org:8080/pics/cat.png?token=abc&user=alice#top") == \
        "http://example.org:8080/pics/cat.png"
    assert public_url("https://example.org/cat.png") == "https://example.org/cat.png"
    assert public_url("https://[::1]:99/a;b?c") == "https://[::1]:99/a;b"


def leaked(folder: Path, *secrets: str) -> list[str]:
    """Files under ``folder`` whose bytes hold any of ``secrets``."""
    return [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()
            and any(secret.encode() in path.read_bytes() for secret in secrets)]


def test_a_url_query_and_credentials_are_never_recorded(tmp_path, capsys):
    import datasets

    from helpers import serve_folder

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(min(SAMPLES.glob("*.png")), served / "digit.png")
    out = tmp_path / "out"
    with serve_folder(served) as base:
        host = base.removeprefix("http://")
        url = f"http://bob:hunter2@{host}/digit.png?token=abc123&user=alice#frag"
        code = main(["explain", "--quiet", "--image", url, "--method", "self-shapley", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "digit" / "explanation.json").read_text())["image"] == f"{base}/digit.png"
    rows = datasets.load_dataset("parquet", data_files=str(out / "data" / "explanations.parquet"), split="train")
    assert rows["image"] == ["digit.png"]
    assert leaked(out, "abc123", "alice", "hunter2", "bob:", "frag") == []


def test_the_python_api_records_the_public_url(tmp_path):
    from helpers import serve_folder
    from moxi_hf import Explainer

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(min(SAMPLES.glob("*.png")), served / "digit.png")
    explainer = Explainer.from_pretrained(SAMPLES.parent)
    with serve_folder(served) as base:
        explanation = explainer.explain(f"{base}/digit.png?token=abc123", method="self-shapley")
    assert explanation.image == f"{base}/digit.png"
    assert "abc123" not in explanation.to_json()


class _Slow:
    """An HTTP server on 127.0.0.1 whose one route sends ``body`` after headers declaring ``length``,
    ``chunk`` bytes every ``pause`` seconds."""

    def __init__(self, body: bytes, length: int | None, chunk: int, pause: float):
        import http.server
        import threading
        import time

        outer = self
        self.sent = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    for start in range(0, len(body), chunk):
                        self.wfile.write(body[start:start + chunk])
                        self.wfile.flush()
                        outer.sent += len(body[start:start + chunk])
                        time.sleep(pause)
                except OSError:  # the client hung up: what the limits are for
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/image.png"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_dripping_url_stops_at_the_total_deadline(monkeypatch):
    import time

    digit = min(SAMPLES.glob("*.png")).read_bytes()
    server = _Slow(digit, len(digit), chunk=1, pause=0.2)  # a 300-byte PNG at 5 bytes a second: a minute
    try:
        start = time.monotonic()
        with pytest.raises(MoXIError, match=r"could not fetch image .*image\.png.*not complete within 1 s"):
            load_image(server.url, deadline=1)
        assert time.monotonic() - start < 3
        monkeypatch.setenv("MOXI_URL_DEADLINE", "0.5")  # the same limit from the environment (the CLI's way)
        start = time.monotonic()
        with pytest.raises(MoXIError, match=r"not complete within 0\.5 s.*MOXI_URL_DEADLINE"):
            load_image(server.url)
        assert time.monotonic() - start < 2
    finally:
        server.close()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_a_url_larger_than_the_cap_is_refused_without_reading_it(monkeypatch, declared):
    body = b"\x89PNG" + bytes(2_000_000)
    server = _Slow(body, len(body) if declared else None, chunk=10_000, pause=0.001)
    try:
        with pytest.raises(MoXIError, match=r"larger than the limit of 1,000 bytes"):
            load_image(server.url, max_bytes=1000)
        monkeypatch.setenv("MOXI_URL_MAX_BYTES", "50000")
        with pytest.raises(MoXIError, match=r"larger than the limit of 50,000 bytes.*MOXI_URL_MAX_BYTES"):
            load_image(server.url)
        assert server.sent < len(body)  # stopped early, not read to the end
    finally:
        server.close()


def test_url_limits_default_to_the_demo_upload_size():
    from moxi_hf import urls

    assert urls.URL_MAX_BYTES == 20_000_000 and 30 <= urls.URL_DEADLINE <= 120
