"""The package's shape: light import, moved names, declared method options, figures without pyplot."""

from __future__ import annotations

import argparse
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


@pytest.mark.parametrize("module, name", [
    ("moxi_hf", "reward_from_logits"),
    ("moxi_hf", "MoXIViTForImageClassification"),
    ("moxi_hf.artifacts", "curves_from_rows"),
    ("moxi_hf.evaluation", "aggregate_curves"),
    ("moxi_hf.evaluation", "plot_curves"),
    ("moxi_hf.evaluation", "package_versions"),
    ("moxi_hf.cli.explain", "positive_int"),
])
def test_moved_names_still_work_with_a_warning(module, name):
    import importlib

    with pytest.warns(DeprecationWarning, match="moved to"):
        value = getattr(importlib.import_module(module), name)
    assert callable(value)


def test_no_backend_switch_anywhere_in_the_library():
    pattern = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot")
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []


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
    assert flags == declared == {"--num-samples", "--seed", "--early-stop"}
    args = parser.parse_args(["--num-samples", "5"])
    assert method_options("full-shapley", args) == {"num_samples": 5}
    with pytest.raises(moxi_hf.MoXIError, match="--num-samples only applies to --method full-shapley, not moxi"):
        method_options("moxi", args)


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
