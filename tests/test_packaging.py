"""A regular install (a wheel, ``pip install .``) carries the embedded default model and explains without the checkout."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from moxi_hf.defaults import SHIPPED_MODELS

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "moxi-vit-mnist"
ZERO_SHOT_MODEL = REPO / "models" / "moxi-clip-mnist"


@pytest.mark.parametrize("model", [REPO / "models" / name for name in SHIPPED_MODELS], ids=lambda path: path.name)
def test_package_data_covers_every_file_of_the_shipped_models(model):
    """Each file of a shipped model (models/<name>) matches a package-data pattern of moxi_hf.models."""
    declared = re.search(r'^"moxi_hf\.models" = (\[.*\])$', (REPO / "pyproject.toml").read_text(), re.M)
    patterns = ast.literal_eval(declared.group(1))
    files = [path.relative_to(model.parent).as_posix() for path in model.rglob("*") if path.is_file()]
    assert files and [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)] == []


def test_a_shipped_model_is_named_by_its_name_from_anywhere(tmp_path, monkeypatch):
    from moxi_hf.sources import resolve_model_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Path(resolve_model_source("moxi-clip-mnist")) == ZERO_SHOT_MODEL
    (tmp_path / "moxi-clip-mnist").mkdir()  # a folder of that name where the command runs wins
    (tmp_path / "moxi-clip-mnist" / "config.json").write_text("{}")
    assert resolve_model_source("moxi-clip-mnist") == "moxi-clip-mnist"


def test_an_installed_package_reads_its_own_copy(tmp_path, monkeypatch):
    import moxi_hf.defaults as defaults

    package = tmp_path / "site" / "moxi_hf"
    (package / "models" / "moxi-vit-mnist").mkdir(parents=True)
    monkeypatch.setattr(defaults, "__file__", str(package / "defaults.py"))
    assert defaults._shipped_model_path() == package / "models" / "moxi-vit-mnist"


@pytest.mark.slow
def test_the_wheel_ships_the_model_and_explains_away_from_the_checkout(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("moxi_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.startswith("moxi_hf/models/")}
        archive.extractall(tmp_path / "site")
    for path in [*MODEL.rglob("*"), *ZERO_SHOT_MODEL.rglob("*")]:
        if path.is_file():  # byte for byte the repository's one copy
            assert shipped[f"moxi_hf/models/{path.relative_to(MODEL.parent).as_posix()}"] == path.read_bytes()
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    env.pop("MOXI_DEFAULT_MODEL", None)
    result = subprocess.run([sys.executable, "-c", "import moxi_hf, sys; from moxi_hf.cli import main; "
                             "print(moxi_hf.__file__); sys.exit(main(sys.argv[1:]))", "explain", "--method",
                             "self-shapley", "--output-dir", "out"], cwd=away, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].startswith(str(tmp_path / "site"))  # the wheel's package, not the checkout's
    assert (away / "out" / "digit_3_1502" / "explanation.json").is_file()
    result = subprocess.run([sys.executable, "-c", "import sys; from moxi_hf.cli import main; sys.exit(main(sys.argv[1:]))",
                             "explain", "--model", "moxi-clip-mnist", "--method", "self-shapley", "--output-dir",
                             "out-zero-shot"], cwd=away, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]  # the zero-shot model by its name, from the wheel
    explained = json.loads((away / "out-zero-shot" / "digit_3_1502" / "explanation.json").read_text())
    assert explained["candidate_labels"][explained["predicted"]] == "three"
