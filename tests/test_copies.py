"""The ``# Copied from transformers...`` forwards still mirror the installed transformers (scripts/check_copies.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BEIT = "transformers.models.beit.modeling_beit.BeitLayer.forward"


@pytest.fixture(scope="module")
def copies():
    spec = importlib.util.spec_from_file_location("check_copies", ROOT / "scripts" / "check_copies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_copies"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_copy_in_the_package_mirrors_transformers(copies):
    found = {copy.original for copy in copies.find_copies(ROOT / "moxi_hf")}
    assert {BEIT, "transformers.models.vit.modeling_vit.ViTModel.forward",
            "transformers.models.data2vec.modeling_data2vec_vision.Data2VecVisionModel.forward"} <= found
    assert copies.check(ROOT / "moxi_hf") == []


def _package(tmp_path: Path, body: str) -> Path:
    package = tmp_path / "pkg"
    package.mkdir(exist_ok=True)
    (package / "layer.py").write_text(f"class Layer:\n    # Copied from {BEIT}\n{body}")
    return package


def _indented(source: str) -> str:
    return "".join(f"    {line}" if line.strip() else line for line in source.splitlines(keepends=True))


def test_an_exact_copy_passes_and_a_changed_line_is_caught(copies, tmp_path):
    original = copies.transformers_source(BEIT)
    assert copies.check(_package(tmp_path, _indented(original))) == []
    changed = original.replace("self.lambda_1 * hidden_states", "self.lambda_2 * hidden_states")
    assert changed != original
    problems = copies.check(_package(tmp_path, _indented(changed)))
    assert len(problems) == 1 and "differs from transformers, unmarked" in problems[0] and "lambda_2" in problems[0]


def test_a_change_in_transformers_is_caught_where_the_copy_mirrors_or_replaces(copies):
    original = copies.transformers_source(BEIT)
    ours = ROOT / "moxi_hf"
    mirrored = original.replace("hidden_states = self.mlp(hidden_states)", "hidden_states = self.ffn(hidden_states)")
    problems = copies.check(ours, lambda name: mirrored if name == BEIT else copies.transformers_source(name))
    assert len(problems) == 1 and "unmarked" in problems[0] and "self . ffn" in problems[0]
    replaced = original.replace("height, width = resolution", "width, height = resolution")
    problems = copies.check(ours, lambda name: replaced if name == BEIT else copies.transformers_source(name))
    assert len(problems) == 1 and "changed in transformers" in problems[0] and "width , height" in problems[0]


def test_markers_must_match_what_they_replace(copies, tmp_path):
    original = copies.transformers_source(BEIT)
    first, _, rest = _indented(original).partition("def forward")
    wrong = first + "# differs from transformers (replaces 1 line, 0000000000): a wrong hash\n" + first + "def forward" + rest
    assert "changed in transformers" in copies.check(_package(tmp_path, wrong))[0]
    indent = " " * 12  # a method's body, one level deeper in the test's class
    dangling = _indented(original).replace(f"\n{indent}residual = hidden_states\n",
                                           f"\n{indent}# same as transformers\n{indent}residual = hidden_states\n", 1)
    assert dangling != _indented(original)
    assert "without a difference before it" in copies.check(_package(tmp_path, dangling))[0]


def test_the_normalisation_ignores_formatting_but_not_a_one_element_tuple(copies):
    def lines(source: str) -> list[str]:
        return [line for line in copies.normalised(source) if isinstance(line, str)]

    assert lines("def f(a, b):\n    '''doc'''\n    return g(a,\n             b,)  # why\n") == \
        lines("def f(a, b):\n\n    return g(a, b)\n")
    assert lines("def f(a):\n    return (a,)\n") != lines("def f(a):\n    return (a)\n")
