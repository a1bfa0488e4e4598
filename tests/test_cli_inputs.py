"""`--image https://...`: URLs are fetched by the one image loader and named by their last path component."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from helpers import serve_folder
from moxi_hf.cli import main
from moxi_hf.cli.common import output_names, resolve_images

SAMPLES = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist" / "samples"


def test_urls_stay_strings_and_are_named_by_their_last_component():
    urls = ["https://example.org/pics/cat.jpg?size=large", "http://example.org/other/cat.png", "https://example.org/"]
    images = resolve_images(argparse.Namespace(image=urls, model=None))
    assert [image.path for image in images] == urls  # not turned into local paths
    assert [image.name for image in images] == ["https://example.org/pics/cat.jpg", urls[1], urls[2]]  # no query
    assert [image.file_name for image in images] == ["cat.jpg", "cat.png", "image"]
    assert output_names(images) == ["cat", "cat-2", "image"]


def test_explain_an_image_url(tmp_path, capsys):
    served = tmp_path / "served"
    served.mkdir()
    sample = min(SAMPLES.glob("*.png"))
    shutil.copy(sample, served / "digit.png")
    out = tmp_path / "out"
    with serve_folder(served) as base:
        url = f"{base}/digit.png"
        code = main(["explain", "--image", url, "--method", "self-shapley", "--output-dir", str(out)])
        assert code == 0, capsys.readouterr().err
        explanation = json.loads((out / "digit" / "explanation.json").read_text())
        assert explanation["image"] == url
        local = main(["explain", "--quiet", "--image", str(sample), "--method", "self-shapley",
                      "--output-dir", str(tmp_path / "local")])
        assert local == 0
        expected = json.loads((tmp_path / "local" / sample.stem / "explanation.json").read_text())
        assert explanation["order"] == expected["order"]
        assert "digit.png: predicted" in capsys.readouterr().out
        assert main(["explain", "--quiet", "--image", f"{base}/missing.png", "--output-dir", str(tmp_path / "x")]) == 1
        assert "HTTP 404" in capsys.readouterr().err


def test_a_mistyped_dataset_folder_fails_at_once(tmp_path, vit_dir, capsys):
    import time

    import pytest

    from moxi_hf import MoXIError
    from moxi_hf.evaluation import EvaluationConfig, open_dataset

    (tmp_path / "data").mkdir()
    typo = str(tmp_path / "dta")
    with pytest.raises(MoXIError, match=r"^no such folder: .*dta.*did you mean .*data"):
        open_dataset(EvaluationConfig(model=vit_dir, dataset=typo, output_dir=str(tmp_path / "out")))
    start = time.perf_counter()
    code = main(["evaluate", "--model", vit_dir, "--dataset", typo, "--output-dir", str(tmp_path / "out")])
    assert code == 1 and time.perf_counter() - start < 20
    assert "no such folder" in capsys.readouterr().err


def test_a_mistyped_model_folder_is_refused_before_torch_is_imported(tmp_path):
    """`--model models/typo` says "no such folder" at once: the check runs before the heavy imports."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    script = ("import sys\nfrom moxi_hf.cli import main\n"
              "code = main(['explain', '--model', 'models/typo', '--image', sys.argv[1], '--output-dir', sys.argv[2]])\n"
              "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\nsys.exit(code)\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script, str(min(SAMPLES.glob("*.png"))), str(tmp_path / "out")],
                            cwd=root, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "no such folder: 'models/typo'" in result.stderr
    assert "torch not imported" in result.stdout
    assert time.monotonic() - started < 5
    assert not (tmp_path / "out").exists()
