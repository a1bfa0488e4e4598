"""Output folders: a rerun deletes only its own files, inputs are never inside, Ctrl+C keeps finished work,
an unusable location is found before any computation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import moxi_hf.cli.explain as cli_explain
from moxi_hf import Explanation, plotting
from moxi_hf.artifacts import MANIFEST_FILE, load_artifacts, prepare_output_dir
from moxi_hf.cli import main
from moxi_hf.defaults import default_sample_images
from moxi_hf.errors import MoXIError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{index}.png")
    return folder


def _explain(vit_dir, output: Path, *extra: str) -> int:
    return main(["explain", "--quiet", "--model", vit_dir, "--method", "self-shapley", "--output-dir", str(output),
                 *extra])


def _tree(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_a_rerun_replaces_only_what_the_previous_run_wrote(vit_dir, images, tmp_path):
    output = tmp_path / "out"
    assert _explain(vit_dir, output, "--image", str(images / "img0.png"), str(images / "img1.png")) == 0
    (output / "notes.txt").write_text("my notes")
    (output / "mine").mkdir()
    (output / "mine" / "keep.txt").write_text("mine")
    (output / "img0" / "sketch.txt").write_text("mine, in a folder the run wrote to")
    assert _explain(vit_dir, output, "--image", str(images / "img2.png")) == 0
    assert (output / "notes.txt").read_text() == "my notes" and (output / "mine" / "keep.txt").read_text() == "mine"
    assert _tree(output / "img0") == ["sketch.txt"]  # the run's files went, the user's stayed
    assert not (output / "img1").exists()  # the previous run's image folder, left empty, is gone
    assert (output / "img2" / "explanation.json").is_file()
    manifest = json.loads((output / MANIFEST_FILE).read_text())
    assert manifest["command"] == "explain" and "img2/explanation.json" in manifest["files"]
    assert "notes.txt" not in manifest["files"] and not any(name.startswith("img0") for name in manifest["files"])
    assert len(load_artifacts(output).rows) == 1


def test_a_folder_written_before_manifests_keeps_the_users_files(vit_dir, images, tmp_path):
    output = tmp_path / "old"
    assert _explain(vit_dir, output, "--image", str(images / "img0.png")) == 0
    (output / MANIFEST_FILE).unlink()  # as an older moxi-hf wrote it
    (output / "notes.txt").write_text("my notes")
    assert _explain(vit_dir, output, "--image", str(images / "img1.png")) == 0
    assert (output / "notes.txt").is_file() and not (output / "img0").exists() and (output / "img1").is_dir()


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_folder_holding_the_inputs_is_refused_before_any_work(vit_dir, images, monkeypatch, capsys,
                                                                       overwrite):
    monkeypatch.setattr(cli_explain, "load_explainer", lambda args: pytest.fail("the model was loaded"))
    before = _tree(images)
    assert _explain(vit_dir, images, "--image", str(images), *(["--overwrite"] if overwrite else [])) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("moxi: error: the output dir") and "img0.png" in message and "input" in message
    assert _tree(images) == before  # nothing written, nothing deleted


def test_overwrite_clears_a_foreign_folder_and_compare_keeps_the_users_files(vit_dir, images, tmp_path):
    output = tmp_path / "foreign"
    output.mkdir()
    (output / "old.txt").write_text("theirs")
    assert _explain(vit_dir, output, "--image", str(images / "img0.png"), "--overwrite") == 0
    assert not (output / "old.txt").exists()
    compare = tmp_path / "compare"
    argv = ["compare", "--quiet", "--model", vit_dir, "--methods", "gradcam", "--output-dir", str(compare), "--image"]
    assert main([*argv, str(images / "img0.png")]) == 0
    (compare / "notes.txt").write_text("mine")
    assert main([*argv, str(images / "img1.png")]) == 0
    assert (compare / "notes.txt").is_file() and not (compare / "img0").exists()
    config = json.loads((compare / "config.json").read_text())
    assert config["kind"] == "compare" and config["images"] == ["img1"] and config["schema_version"]


def test_a_manifest_never_reaches_outside_its_folder(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not the run's")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.txt").write_text("the run's")
    (folder / MANIFEST_FILE).write_text(json.dumps({"command": "explain", "files": ["../outside.txt", str(outside),
                                                                                    "a.txt"]}))
    plan = prepare_output_dir(folder, "explain")
    assert plan.owned == ["a.txt"]
    with plan.staged() as staging:
        (staging / "b.txt").write_text("new")
    assert outside.read_text() == "not the run's" and _tree(folder) == [MANIFEST_FILE, "b.txt"]


def test_an_unusable_output_location_is_found_before_computing(vit_dir, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_explain, "load_explainer", lambda args: pytest.fail("the model was loaded"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert _explain(vit_dir, blocker / "out", "--image", str(images / "img0.png")) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("moxi: error: cannot write to the output dir") and "a-file" in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="a read-only folder does not stop root")
def test_a_read_only_parent_is_found_before_computing(vit_dir, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_explain, "load_explainer", lambda args: pytest.fail("the model was loaded"))
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert _explain(vit_dir, parent / "out", "--image", str(images / "img0.png")) == 1
    finally:
        parent.chmod(0o755)
    assert "cannot write to the output dir" in capsys.readouterr().err


def _interrupt_at(module, name: str, call: int, monkeypatch) -> None:
    """Make the ``call``-th call of ``module.name`` raise KeyboardInterrupt, as Ctrl+C would at that moment."""
    original, calls = getattr(module, name), []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupting)


def test_ctrl_c_keeps_the_images_explained_so_far(vit_dir, images, tmp_path, monkeypatch, capsys):
    output = tmp_path / "out"
    _interrupt_at(Explanation, "plot", 3, monkeypatch)  # the third image has its JSON, not yet its heatmap
    assert _explain(vit_dir, output, "--image", str(images), "--batch-size", "1") == 130
    err = capsys.readouterr().err
    assert "interrupted after 2 of 3 images" in err and str(output) in err
    assert sorted(path.name for path in output.iterdir() if path.is_dir()) == ["data", "img0", "img1"]
    config = json.loads((output / "config.json").read_text())
    assert config["interrupted"] == {"images": 2, "of": 3}
    assert "**Interrupted**: the run was stopped after 2 of 3 images" in (output / "README.md").read_text()
    assert len(load_artifacts(output).rows) == 2


def test_ctrl_c_before_any_image_leaves_the_previous_output(vit_dir, images, tmp_path, monkeypatch, capsys):
    output = tmp_path / "out"
    assert _explain(vit_dir, output, "--image", str(images / "img0.png")) == 0
    before = {name: (output / name).read_bytes() for name in _tree(output)}
    _interrupt_at(Explanation, "plot", 1, monkeypatch)
    assert _explain(vit_dir, output, "--image", str(images / "img1.png")) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert {name: (output / name).read_bytes() for name in _tree(output)} == before


def test_ctrl_c_keeps_the_images_compared_so_far(vit_dir, images, tmp_path, monkeypatch, capsys):
    output = tmp_path / "compare"
    _interrupt_at(plotting, "save_figure", 2, monkeypatch)
    assert main(["compare", "--quiet", "--model", vit_dir, "--methods", "gradcam", "--batch-size", "1",
                 "--image", str(images), "--output-dir", str(output)]) == 130
    assert "interrupted after 1 of 3 images" in capsys.readouterr().err
    assert _tree(output) == [MANIFEST_FILE, "config.json", "img0/compare.json", "img0/compare.png"]
    config = json.loads((output / "config.json").read_text())
    assert config["interrupted"] == {"images": 1, "of": 3} and config["images"] == ["img0"]


def test_evaluate_refuses_an_output_folder_that_holds_its_dataset(vit_dir, images, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    for label in ("0", "1"):
        (dataset / label).mkdir(parents=True)
        (images / f"img{label}.png").rename(dataset / label / f"img{label}.png")
    code = main(["evaluate", "--quiet", "--model", vit_dir, "--dataset", str(dataset), "--output-dir",
                 str(dataset / "results"), "--methods", "gradcam", "--device", "cpu"])
    assert code == 1 and "holds input(s) of this run" in capsys.readouterr().err
    assert not (dataset / "results").exists()


def test_output_dir_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(MoXIError, match="is a file"):
        prepare_output_dir(tmp_path / "file", "explain")


@pytest.mark.slow
def test_sigint_during_moxi_explain_writes_what_is_finished(tmp_path):
    """A real Ctrl+C (SIGINT) in the middle of `moxi explain --batch-size 1` on the six sample digits."""
    output = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    process = subprocess.Popen([sys.executable, "-m", "moxi_hf", "explain", "--method", "full-shapley",
                                "--batch-size", "1", "--output-dir", str(output)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):  # one summary line per finished image
            assert process.stdout.readline(), process.stderr.read()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 130, err
    config = json.loads((output / "config.json").read_text())
    done, total = config["interrupted"]["images"], config["interrupted"]["of"]
    assert total == len(default_sample_images()) and 2 <= done < total
    assert f"interrupted after {done} of {total} images" in err and "Traceback" not in err
    assert len([path for path in output.iterdir() if (path / "explanation.json").is_file()]) == done
    assert len(load_artifacts(output).rows) == done

