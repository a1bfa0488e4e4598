"""The package's shape: light import, declared method options, figures without pyplot."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import moxi_hf

PACKAGE = Path(moxi_hf.__file__).resolve().parent


def test_import_is_light():
    script = "import sys, moxi_hf; print(sorted(m for m in ('torch', 'matplotlib', 'datasets') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_top_level_names_load_on_use():
    assert moxi_hf.load_artifacts.__module__ == "moxi_hf.artifacts.loading"
    assert moxi_hf.Artifacts.from_pretrained.__func__.__qualname__ == "Artifacts.from_pretrained"
    assert moxi_hf.Explainer.__name__ == "Explainer" and set(moxi_hf.__all__) <= set(dir(moxi_hf))
    with pytest.raises(AttributeError):
        moxi_hf.no_such_name  # noqa: B018


def backend_switches(package: Path) -> list[str]:
    """Modules of ``package`` that call ``matplotlib.use`` or import pyplot (which may switch the backend)."""
    pattern = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot")
    return [str(path.relative_to(package)) for path in package.rglob("*.py") if pattern.search(path.read_text())]


def test_no_backend_switch_anywhere_in_the_library(tmp_path):
    assert backend_switches(PACKAGE) == []
    (tmp_path / "bad.py").write_text("import matplotlib\nmatplotlib.use('Agg')\n")
    (tmp_path / "good.py").write_text("from matplotlib.figure import Figure\n")
    assert backend_switches(tmp_path) == ["bad.py"]


def test_method_options_are_declared_once_and_drive_the_flags():
    from moxi_hf.cli.common import add_method_option_flags, method_options
    from moxi_hf.methods import METHODS
    from moxi_hf.options import METHOD_NAMES, METHOD_OPTIONS

    assert tuple(METHODS) == METHOD_NAMES
    for name, cls in METHODS.items():
        assert cls.options == METHOD_OPTIONS[name]
        assert {option.name: option.default for option in cls.options} == cls().option_values()
    parser = argparse.ArgumentParser()
    add_method_option_flags(parser)
    flags = {action.option_strings[0] for action in parser._actions if action.option_strings[0] != "-h"}
    declared = {option.flag for options in METHOD_OPTIONS.values() for option in options if option.cli}
    assert flags == declared == {"--num-samples", "--seed", "--sampler", "--early-stop", "--budget", "--candidates",
                                 "--refresh", "--warmup"}
    args = parser.parse_args(["--num-samples", "5", "--sampler", "original"])
    assert method_options("full-shapley", args) == {"num_samples": 5, "sampler": "original"}
    with pytest.raises(moxi_hf.MoXIError, match="--num-samples only applies to --method full-shapley, not moxi"):
        method_options("moxi", args)
    with pytest.raises(SystemExit):  # argparse: a sampler that is not one of the choices
        parser.parse_args(["--sampler", "kernel"])


def test_explanation_repr_png_and_plot_keep_the_backend(vit_dir, pixel_values):
    import matplotlib
    from matplotlib.figure import Figure

    backend = matplotlib.get_backend()
    explainer = moxi_hf.Explainer.from_pretrained(vit_dir)
    explanation = explainer.explain(pixel_values[0], method="self-shapley")
    text = repr(explanation)
    assert text.startswith("Explanation(method='self-shapley'") and len(text) < 200 and "\n" not in text
    assert explanation._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(explanation.plot(), Figure)
    assert matplotlib.get_backend() == backend


def test_overlay_is_drawn_on_the_model_view_of_a_centre_cropping_processor(tmp_path):
    """A DeiT-style processor resizes then centre-crops: the heat cell of a patch sits on that patch's pixels."""
    import numpy as np
    from PIL import Image
    from transformers import DeiTImageProcessor

    from moxi_hf.plotting import model_view, plot_explanation

    processor = DeiTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 16, "width": 16},
                                   do_center_crop=True, resample=Image.NEAREST)
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[16:24, 16:24] = (255, 0, 0)  # after resize to 32: [8:12]; after the crop [8:24]: the top-left patch
    view = np.asarray(model_view(Image.fromarray(picture), processor))
    assert view.shape == (16, 16, 3)
    red = np.argwhere(view[..., 0] > 200)
    assert red.min(0).tolist() == [0, 0] and red.max(0).tolist() == [3, 3]
    explanation = moxi_hf.Explanation(method="moxi", curve="insertion", label=0, order=[0, 1, 2, 3],
                                      heatmap=[[1.0, 0.0], [0.0, 0.0]], patches_needed=1, grid=(2, 2))
    explanation.display_image = Image.fromarray(view)
    figure = plot_explanation(explanation)
    picture_layer, heat_layer = figure.axes[0].get_images()
    assert picture_layer.get_extent() == heat_layer.get_extent() == [0, 16, 16, 0]
    # the hot cell (row 0, col 0) covers pixels [0, 8) x [0, 8): the red patch lies inside it
    assert red.max() < 16 / 2


# -- layout rules: each checker is also run on a small broken example, so each can fail ---------------

ROOT = PACKAGE.parent
MAX_LINES = 450


def long_modules(package: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """module path -> line count, for the modules of ``package`` longer than ``limit`` lines."""
    counts = {str(path.relative_to(package)): len(path.read_text().splitlines()) for path in package.rglob("*.py")}
    return {name: count for name, count in counts.items() if count > limit}


def _module_name(package: Path, path: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements run when the module is imported: module level, inside if/try/with, not under
    ``if TYPE_CHECKING`` and not inside functions or classes' methods."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody,
                            *(stmt for handler in node.handlers for stmt in handler.body)])
        elif isinstance(node, (ast.With, ast.ClassDef)):
            pending.extend(node.body)
    return found


def import_graph(package: Path, inside_functions: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports at import time (a module also runs its target's packages);
    ``inside_functions``: every import statement, those run when a function is called included."""
    paths = {_module_name(package, path): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        tree = ast.parse(path.read_text())
        statements = ([node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
                      if inside_functions else _import_time_imports(tree))
        for node in statements:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = own_package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in paths]
                targets = submodules if submodules and not node.module else [module, *submodules]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c first runs a and a.b
                    prefix = ".".join(parts[:i])
                    if prefix in paths and prefix not in ancestors:
                        graph[name].add(prefix)
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


_MD_LINK = re.compile(r"\]\(([^)\s#]+\.md)(?:#[^)]*)?\)")
_MD_MENTION = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)?[\w./-]*\w\.md)\b")


def missing_md_citations(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """``file: cited.md`` for every ``*.md`` path cited in a ``*.md``/``*.py`` file under ``root`` that
    exists neither beside the citing file nor from ``root``.

    Cited: a markdown link target, or a bare mention whose folder part (if any) exists, so that a
    placeholder such as ``output_dir/README.md`` is not taken for a file; web links are not checked.
    """
    missing = []
    files = [path for suffix in ("*.md", "*.py") for path in root.rglob(suffix)
             if path not in skip and not any(part.startswith(".") or part in ("__pycache__", "build", "dist")
                                             for part in path.relative_to(root).parts)]
    for path in files:
        text = re.sub(r"[a-z]+://\S+", "", path.read_text(errors="replace"))
        links = set(_MD_LINK.findall(text))
        for cited in sorted(links | set(_MD_MENTION.findall(text))):
            bases = (path.parent, root)
            folder = Path(cited).parent
            if cited not in links and folder != Path(".") and not any((base / folder).is_dir() for base in bases):
                continue  # a placeholder path, not a citation
            if not any((base / cited).exists() for base in bases):
                missing.append(f"{path.relative_to(root).as_posix()}: {cited}")
    return missing


def test_no_module_is_over_the_line_limit(tmp_path):
    assert long_modules(PACKAGE) == {}
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == {"long.py": MAX_LINES + 1}


def test_no_import_cycle_at_import_time(tmp_path):
    graph = import_graph(PACKAGE)
    assert "moxi_hf.images" in graph["moxi_hf.explainer"] and "moxi_hf.methods" in graph["moxi_hf.explainer"]
    assert import_cycle(graph) is None
    # A made-up package: a -> b.c at import time (b runs first), b/c -> a; a lazy import inside a function
    # and one under TYPE_CHECKING do not count.
    package = tmp_path / "pkg"
    (package / "b").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "b" / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n"
                                  "def f():\n    from . import d\n")
    (package / "d.py").write_text("from . import a\n")
    (package / "b" / "c.py").write_text("from ..a import f\n")
    assert import_cycle(import_graph(package)) is None
    assert import_cycle(import_graph(package, inside_functions=True)) == ["pkg.a", "pkg.d", "pkg.a"]
    (package / "a.py").write_text("try:\n    from .b.c import g\nexcept ImportError:\n    pass\n")
    assert import_cycle(import_graph(package)) == ["pkg.a", "pkg.b.c", "pkg.a"]


def test_no_import_cycle_even_inside_functions():
    """Modules import each other one way only, also where an import waits inside a function (light --help)."""
    graph = import_graph(PACKAGE, inside_functions=True)
    assert "moxi_hf.cli.compare" in graph["moxi_hf.cli.explain"]
    assert import_cycle(graph) is None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_privates(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, variables, methods and ``self._x`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if _private(name)}


def private_uses(package: Path) -> list[str]:
    """``module:line name (from other)`` for every use of another module's private name: an import of a
    ``_name`` from a module of the package, an import of a private module from outside its folder, or an
    attribute ``x._name`` that the module does not define itself but another module of the package does."""
    paths = {_module_name(package, path): path for path in package.rglob("*.py")}
    trees = {name: ast.parse(path.read_text()) for name, path in paths.items()}
    defined = {name: _defined_privates(tree) for name, tree in trees.items()}
    found = []
    for name, tree in trees.items():
        path = paths[name]
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = own_package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                if module not in paths and not module.startswith(package.name):
                    continue  # another project's module
                parts = module.split(".")
                hidden = next((i for i, part in enumerate(parts) if _private(part)), None)
                owner = ".".join(parts[:hidden]) if hidden is not None else None
                if owner is not None and name != owner and not name.startswith(owner + "."):
                    found.append(f"{name}:{node.lineno} imports the private module {module}")
                found += [f"{name}:{node.lineno} {alias.name} (from {module})" for alias in node.names
                          if _private(alias.name) and module != name]
            elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in defined[name]:
                owners = sorted(other for other, names in defined.items() if node.attr in names)
                if owners:
                    found.append(f"{name}:{node.lineno} {node.attr} (from {', '.join(owners)})")
    return sorted(found)


def test_no_module_uses_another_modules_private_names(tmp_path):
    assert private_uses(PACKAGE) == []
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for init in (package / "__init__.py", package / "sub" / "__init__.py"):
        init.write_text("")
    (package / "a.py").write_text("def _helper():\n    pass\n\n\nclass A:\n    def _check(self):\n        pass\n")
    (package / "sub" / "_impl.py").write_text("def run():\n    pass\n")
    (package / "sub" / "ok.py").write_text("from ._impl import run\nimport os\n\nos._exit\n")
    (package / "b.py").write_text("from .a import A, _helper\nfrom .sub._impl import run\n\n\n"
                                  "def f(a: A):\n    return a._check()\n")
    assert private_uses(package) == ["pkg.b:1 _helper (from pkg.a)", "pkg.b:2 imports the private module pkg.sub._impl",
                                     "pkg.b:6 _check (from pkg.a)"]


def test_every_cited_md_file_exists(tmp_path):
    assert missing_md_citations(ROOT, skip=(Path(__file__).resolve(),)) == []  # this file's examples are made up
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("See [b](b.md), [c](../c.md), [d](out/d.md#x), docs/a.md and "
                                            "https://x.org/y.md.\n")
    (tmp_path / "docs" / "b.md").write_text("")
    (tmp_path / "tool.py").write_text('"""Cites NOTES.md, docs/e.md and docs/a.md; writes output_dir/README.md."""\n')
    assert missing_md_citations(tmp_path) == ["docs/a.md: ../c.md", "docs/a.md: out/d.md", "tool.py: NOTES.md",
                                              "tool.py: docs/e.md"]
