"""A model folder that ships its own Python code (``auto_map``): never run, never asked about, unless the user says so."""

from __future__ import annotations

import ast
import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import moxi_hf
from moxi_hf import Explainer, MoXIError
from moxi_hf.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = min((REPO / "models" / "moxi-vit-mnist" / "samples").glob("*.png"))

CUSTOM_CODE = '''
from pathlib import Path

Path({marker!r}).write_text("the model's own code ran")

from transformers import ViTConfig, ViTForImageClassification


class CustomConfig(ViTConfig):
    model_type = "moxi-custom-vit"


class CustomModel(ViTForImageClassification):
    config_class = CustomConfig
'''


def custom_model(vit_dir: str, folder: Path, model_type: str = "moxi-custom-vit") -> tuple[Path, Path]:
    """A copy of the tiny ViT whose config names ``custom.py`` under ``auto_map``; returns (folder, marker)."""
    shutil.copytree(vit_dir, folder)
    marker = folder.parent / f"{folder.name}-ran.txt"
    (folder / "custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom.CustomConfig",
                            "AutoModelForImageClassification": "custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.fixture
def no_prompt(monkeypatch, tmp_path):
    """Reading stdin or asking a question fails the test; the code that would run goes to a cache of its own."""

    class Closed:
        def __getattr__(self, name):
            raise AssertionError(f"stdin was used ({name})")

    def ask(*args, **kwargs):
        raise AssertionError(f"a question was asked: {args}")

    monkeypatch.setattr(builtins, "input", ask)
    monkeypatch.setattr(sys, "stdin", Closed())
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


def test_a_model_that_needs_its_own_code_is_refused_in_one_line(vit_dir, tmp_path, no_prompt, capsys):
    folder, marker = custom_model(vit_dir, tmp_path / "custom")
    with pytest.raises(MoXIError, match=r"needs its own Python code.*--trust-remote-code.*trust_remote_code=True"):
        Explainer.from_pretrained(folder)
    code = main(["explain", "--model", str(folder), "--image", str(SAMPLE), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--trust-remote-code" in err
    assert not marker.exists()


def test_a_known_architecture_with_an_auto_map_loads_without_its_code(vit_dir, tmp_path, no_prompt):
    folder, marker = custom_model(vit_dir, tmp_path / "vit-with-code", model_type="vit")
    explainer = Explainer.from_pretrained(folder)  # the built-in ViT classes
    assert type(explainer.model).__module__.startswith("moxi_hf") and not marker.exists()


def test_trust_remote_code_runs_it_when_asked(vit_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder, marker = custom_model(vit_dir, tmp_path / "trusted")
    explainer = Explainer.from_pretrained(folder, trust_remote_code=True)
    assert marker.exists() and type(explainer.model).__name__ == "CustomModel"


@pytest.mark.slow
def test_the_command_line_never_asks_even_with_a_yes_waiting_on_stdin(vit_dir, tmp_path):
    folder, marker = custom_model(vit_dir, tmp_path / "custom")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "moxi_hf", "explain", "--model", str(folder), "--image", str(SAMPLE),
               "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(command, input="y\n", capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 1 and "--trust-remote-code" in result.stderr
    assert "[y/N]" not in result.stdout + result.stderr and not marker.exists()
    trusted = subprocess.run([*command, "--trust-remote-code", "--method", "self-shapley"], capture_output=True,
                             text=True, timeout=120, env=env, check=False)
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()


@pytest.mark.parametrize("command", ["explain", "compare", "evaluate", "demo"])
def test_the_commands_that_load_a_model_take_the_flag(command):
    parser = build_parser()
    assert parser.parse_args([command]).trust_remote_code is False
    assert parser.parse_args([command, "--trust-remote-code"]).trust_remote_code is True


def test_every_from_pretrained_call_says_whether_to_trust_remote_code():
    """A loader that leaves trust_remote_code out lets transformers ask on stdin (and run the code on 'y')."""
    package = Path(moxi_hf.__file__).parent
    missing = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_pretrained"
                    and not any(keyword.arg == "trust_remote_code" for keyword in node.keywords)):
                missing.append(f"{path.relative_to(package)}:{node.lineno}")
    assert missing == []
