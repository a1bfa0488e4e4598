"""The ``moxi`` command line, end to end on the shipped default model (offline): files, schema, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from transformers import BertConfig

import moxi_hf
from moxi_hf.cli import default_model_path, main
from moxi_hf.cli.explain import output_names
from moxi_hf.defaults import DEFAULT_MODEL_ENV, default_sample_images
from moxi_hf.errors import MoXIError

REPO = Path(moxi_hf.__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "moxi-vit-mnist"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = 7
N_PLAYERS = GRID * GRID

# key -> allowed types of Explanation.to_dict() as written to explanation.json
REQUIRED = {
    "method": str, "curve": str, "label": int, "label_name": str, "predicted": int, "order": list,
    "scores": (list, type(None)), "heatmap": list, "patches_needed": int, "grid": list, "patch_grid": list,
    "curve_probabilities": list, "curve_predictions": list, "model": str, "reward": str, "masking": str,
    "image": str, "options": dict,
}


def check_png(path: Path) -> tuple[int, int]:
    """A non-empty, valid PNG; returns its size."""
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def check_order(order: list) -> None:
    assert sorted(order) == list(range(N_PLAYERS)), order


@pytest.fixture(scope="module")
def samples() -> list[Path]:
    return default_sample_images()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """``moxi explain`` with no --model/--image (the Quick start command): the shipped model on its samples."""
    out = tmp_path_factory.mktemp("explain")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["explain", "--output-dir", str(out)])
    return code, out, stdout.getvalue(), stderr.getvalue()


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the default model --------------------------------------------------------------------------


def test_default_model_is_the_shipped_one(monkeypatch):
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    assert default_model_path() == SHIPPED.resolve()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (SHIPPED / name).is_file(), name
    images = default_sample_images()
    assert images and all(p.suffix == ".png" and p.parent == SHIPPED.resolve() / "samples" for p in images)


def test_missing_default_model_says_to_pass_model(monkeypatch, tmp_path):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(tmp_path / "not-there"))
    with pytest.raises(MoXIError, match="--model"):
        default_model_path()


def test_output_names_disambiguate_repeated_stems():
    paths = [Path("a/x.png"), Path("b/x.png"), Path("x.jpg"), Path("x-2.png"), Path("y.png")]
    names = output_names(paths)
    assert names == ["x", "x-2", "x-3", "x-2-2", "y"]
    assert len(set(names)) == len(names)


# -- moxi explain end to end ----------------------------------------------------------------------


def test_explain_default_writes_json_and_heatmap_per_sample(default_run, samples):
    code, out, stdout, _ = default_run
    assert code == 0
    assert len(samples) >= 3
    for sample in samples:
        folder = out / sample.stem
        data = json.loads((folder / "explanation.json").read_text())
        for key, kind in REQUIRED.items():
            assert isinstance(data[key], kind), (key, data[key])
        assert data["method"] == "moxi" and data["curve"] == "insertion"
        assert data["grid"] == [GRID, GRID] and data["patch_grid"] == [GRID, GRID]
        check_order(data["order"])
        assert len(data["scores"]) == N_PLAYERS
        assert len(data["heatmap"]) == GRID and all(len(row) == GRID for row in data["heatmap"])
        assert len(data["curve_probabilities"]) == len(data["curve_predictions"]) == N_PLAYERS + 1
        # the label explained is the prediction; the shipped model gets its held-out samples right
        digit = sample.stem.split("_")[1]
        assert data["label"] == data["predicted"] == int(digit) and data["label_name"] == digit
        # heatmap = linear ramp over the patches needed; the label is reached after exactly that many
        needed = data["patches_needed"]
        assert 1 <= needed <= N_PLAYERS
        flat = [value for row in data["heatmap"] for value in row]
        assert max(flat) == needed and sum(value > 0 for value in flat) == needed
        assert data["curve_predictions"][needed] == data["label"]
        assert all(p != data["label"] for p in data["curve_predictions"][1:needed])
        assert data["image"] == sample.name  # relative to the folder given: nothing of the file system
        check_png(folder / "heatmap.png")
        # one summary line per image, naming the class and where the files went
        line = next(line for line in stdout.splitlines() if line.startswith(sample.name))
        assert f"predicted {digit}" in line and f"{needed} of {N_PLAYERS} patches" in line and str(folder) in line
    assert str(out) in stdout.splitlines()[-1]


def test_explain_default_also_writes_a_dataset_layout(default_run, samples):
    _, out, _, _ = default_run
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(out / "data" / "explanations.parquet"), split="train")
    assert len(rows) == len(samples)
    assert {row["method"] for row in rows} == {"moxi"}
    assert (out / "README.md").is_file()


@pytest.mark.slow
def test_python_m_moxi_hf_explain_subprocess(tmp_path, samples):
    env = {k: v for k, v in os.environ.items() if k != DEFAULT_MODEL_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "moxi_hf", "explain", "--image", str(samples[0]), "--method", "gradcam",
         "--curve", "deletion", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / samples[0].stem / "explanation.json").read_text())
    assert data["method"] == "gradcam" and data["curve"] == "deletion"
    check_order(data["order"])
    check_png(tmp_path / samples[0].stem / "heatmap.png")
    assert samples[0].name in result.stdout and "removed to change the prediction" in result.stdout


def test_quiet_prints_nothing_and_label_is_honoured(tmp_path, samples, capsys):
    image = samples[0]
    other = (int(image.stem.split("_")[1]) + 1) % 10
    code, out, err = run_main(["explain", "--quiet", "--image", str(image), str(image), "--method", "self-shapley",
                               "--label", str(other), "--players-grid", "7", "--output-dir", str(tmp_path)], capsys)
    assert code == 0 and out == "" and err == ""
    for name in (image.stem, f"{image.stem}-2"):  # the repeated image gets its own folder
        data = json.loads((tmp_path / name / "explanation.json").read_text())
        assert data["label"] == other and data["predicted"] != other
        check_order(data["order"])


# -- moxi compare ---------------------------------------------------------------------------------


def test_compare_writes_one_png_with_every_method_and_both_curves(tmp_path, samples, capsys):
    methods = ["moxi", "self-shapley", "full-shapley", "gradcam", "attention-rollout"]
    code, out, err = run_main(["compare", "--quiet", "--image", str(samples[1]), "--methods", *methods,
                               "--num-samples", "4", "--output-dir", str(tmp_path)], capsys)
    assert code == 0, err
    folder = tmp_path / samples[1].stem
    width, height = check_png(folder / "compare.png")
    assert width > height  # a row of heatmaps over two curve panels
    data = json.loads((folder / "compare.json").read_text())
    assert list(data["methods"]) == methods
    full = {}
    for name, record in data["methods"].items():
        assert record["explanation"]["method"] == name
        for curve in ("insertion", "deletion"):
            check_order(record[curve]["order"])
            probabilities = record[curve]["probabilities"]
            assert len(probabilities) == N_PLAYERS + 1
            assert abs(record[curve]["auc"] - sum(probabilities) / len(probabilities)) < 1e-6
        full[name] = (record["insertion"]["probabilities"][-1], record["deletion"]["probabilities"][0])
    # every curve starts/ends at the whole image, whichever order it follows
    values = [value for pair in full.values() for value in pair]
    assert max(values) - min(values) < 1e-4
    # MoXI's own insertion order differs from its deletion order; CAM orders are shared by both curves
    moxi, cam = data["methods"]["moxi"], data["methods"]["gradcam"]
    assert cam["insertion"]["order"] == cam["deletion"]["order"]
    assert moxi["insertion"]["auc"] >= cam["insertion"]["auc"]
    assert moxi["deletion"]["auc"] <= cam["deletion"]["auc"]


def test_explain_compare_flag_writes_compare_png(tmp_path, samples, capsys):
    code, out, err = run_main(["explain", "--compare", "--methods", "gradcam", "gradcam++", "--method", "gradcam",
                               "--image", str(samples[2]), "--output-dir", str(tmp_path)], capsys)
    assert code == 0, err
    folder = tmp_path / samples[2].stem
    check_png(folder / "compare.png")
    check_png(folder / "heatmap.png")
    assert "compare.png" in out


# -- exit codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["explain", "--method", "lime"],
    ["explain", "--curve", "sideways"],
    ["explain", "--players-grid", "0"],
    ["explain", "--budget", "slow"],
    ["explain", "--budget", "fast", "--candidates", "0"],
    ["explain", "--budget", "fast", "--refresh", "-1"],
    ["compare", "--methods", "nope"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
               vocab_size=10).save_pretrained(root / "text-model")
    (root / "corrupt.png").write_bytes(PNG_SIGNATURE + b"not really a png")
    return root


@pytest.mark.parametrize("case, message", [
    ("missing-model", "does not exist"),
    ("text-model", "is not an image classifier"),
    ("token-on-resnet", "token masking needs a model with patch tokens"),
    ("missing-image", "does not exist"),
    ("corrupt-image", "cannot read image"),
    ("label-out-of-range", "label 10 is out of range"),
    ("players-grid", "does not divide"),
    ("early-stop-gradcam", "--early-stop only applies to --method moxi"),
    ("budget-gradcam", "--budget only applies to --method moxi, not gradcam"),
    ("budget-early-stop", "cannot be combined with early_stop (--early-stop)"),
    ("candidates-exact", "candidates, refresh and warmup apply to budget 'fast' (--budget fast)"),
    ("compare-budget-gradcam", "--budget only applies to moxi, which is not among the methods (gradcam)"),
    ("compare-label-out-of-range", "label 10 is out of range"),
    ("compare-missing-image", "does not exist"),
])
def test_runtime_errors_exit_1_with_one_line(case, message, bad_inputs, resnet_dir, samples, tmp_path, capsys):
    image = str(samples[0])
    argv = {
        "compare-label-out-of-range": ["compare", "--image", image, "--label", "10"],
        "compare-missing-image": ["compare", "--image", str(bad_inputs / "missing.png")],
        "missing-model": ["--model", str(bad_inputs / "no-such-model"), "--image", image],
        "text-model": ["--model", str(bad_inputs / "text-model"), "--image", image],
        "token-on-resnet": ["--model", resnet_dir, "--masking", "token", "--image", image],
        "missing-image": ["--image", str(bad_inputs / "missing.png")],
        "corrupt-image": ["--image", str(bad_inputs / "corrupt.png")],
        "label-out-of-range": ["--image", image, "--label", "10"],
        "players-grid": ["--image", image, "--players-grid", "3"],
        "early-stop-gradcam": ["--image", image, "--method", "gradcam", "--early-stop"],
        "budget-gradcam": ["--image", image, "--method", "gradcam", "--budget", "fast"],
        "budget-early-stop": ["--image", image, "--budget", "fast", "--early-stop"],
        "candidates-exact": ["--image", image, "--candidates", "4"],
        "compare-budget-gradcam": ["compare", "--image", image, "--methods", "gradcam", "--budget", "fast"],
    }[case]
    command = argv.pop(0) if argv[0] == "compare" else "explain"
    code, out, err = run_main([command, "--quiet", "--output-dir", str(tmp_path), *argv], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moxi: error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))  # nothing half-written


def test_debug_shows_the_traceback(bad_inputs, tmp_path, capsys):
    code, _, err = run_main(["explain", "--debug", "--image", str(bad_inputs / "missing.png"),
                             "--output-dir", str(tmp_path)], capsys)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("moxi: error: ")


# -- the output folder is moxi explain's own; bad images in a folder ------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_explain_refuses_a_foreign_folder_and_leaves_it_unchanged(tmp_path, samples, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "README.md").write_text("my notes")
    (foreign / "config.json").write_text('{"kind": "evaluate"}')  # e.g. an evaluation's folder
    before = _tree(foreign)
    code, _, err = run_main(["explain", "--image", str(samples[0]), "--output-dir", str(foreign), "--quiet"], capsys)
    assert code == 1 and "is not empty and is not a moxi explain output" in err and "--overwrite" in err
    assert err.count("\n") == 1
    assert _tree(foreign) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging folder left beside it

    code, _, err = run_main(["explain", "--image", str(samples[0]), "--output-dir", str(foreign), "--quiet",
                             "--overwrite"], capsys)
    assert code == 0 and "--overwrite: clearing" in err
    assert not (foreign / "README.md").read_text().startswith("my notes")
    assert json.loads((foreign / "config.json").read_text())["kind"] == "explain"


def test_a_second_explain_replaces_the_first_whole(tmp_path, samples, capsys):
    output = tmp_path / "out"
    assert run_main(["explain", "--image", str(samples[0]), str(samples[1]), "--output-dir", str(output),
                     "--quiet"], capsys)[0] == 0
    assert (output / samples[0].stem).is_dir() and (output / samples[1].stem).is_dir()
    code, _, err = run_main(["explain", "--image", str(samples[2]), "--output-dir", str(output), "--quiet"], capsys)
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "replacing the previous moxi explain output" in lines[0]
    folders = sorted(p.name for p in output.iterdir() if p.is_dir() and p.name not in ("data", "plots"))
    assert folders == [samples[2].stem]  # nothing of the first run left
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(output / "data" / "explanations.parquet"), split="train")
    assert rows["image"] == [samples[2].name]


def test_bad_images_in_a_folder_are_reported_and_the_good_ones_written(tmp_path, samples, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for sample in samples[:2]:
        (folder / sample.name).write_bytes(sample.read_bytes())
    (folder / "broken.png").write_bytes(PNG_SIGNATURE + b"truncated")
    (folder / "empty.jpg").write_bytes(b"")
    output = tmp_path / "out"
    code, out, err = run_main(["explain", "--image", str(folder), "--output-dir", str(output)], capsys)
    assert code == 1
    skipped = [line for line in err.splitlines() if line.startswith("moxi: skipping an image:")]
    assert len(skipped) == 2 and any("broken.png" in line for line in skipped)
    assert any("empty.jpg" in line for line in skipped)
    assert "2 of 4 images could not be read" in err.strip().splitlines()[-1]
    for sample in samples[:2]:
        assert (output / sample.stem / "explanation.json").is_file()
    assert not (output / "broken").exists()
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(output / "data" / "explanations.parquet"), split="train")
    assert sorted(rows["image"]) == sorted(sample.name for sample in samples[:2])


def test_help_and_usage_errors_do_not_import_torch(tmp_path):
    script = (
        "import sys\n"
        "from moxi_hf.cli import main\n"
        "for argv in (['--help'], ['explain', '--help'], ['evaluate', '--help'], ['explain', '--curve', 'x'],"
        " ['frobnicate']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code in (0, 2), exit.code\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules, 'datasets' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False False"
