"""``moxi evaluate``: selection, curves/AUC, output folder, 1 vs 2 processes (accelerate), kill and resume.

Offline: a tiny random ViT (4×4 patches, 3 classes) and an imagefolder of random 16×16 images
labelled with the model's own predictions, every fifth one mislabelled (so the selection must
skip it). Runs that are compared bit for bit happen in fresh subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from moxi_hf.artifacts import SCHEMA_VERSION
from moxi_hf.cli import main
from moxi_hf.errors import MoXIError
from moxi_hf.evaluation import EvaluationConfig, evaluate
from moxi_hf.evaluation.config import method_options
from moxi_hf.metrics import aggregate_curves
from moxi_hf.options import BUDGETS

REPO = Path(__file__).resolve().parent.parent
NUM_IMAGES = 40
NUM_CLASSES = 3
# The runs compared bit for bit: 7 images in chunks of 2 -> 4 chunks (2 per process with 2 processes).
RUN_ARGS = ["--num-images", "7", "--batch-size", "2", "--methods", "moxi", "full-shapley", "gradcam",
            "--num-samples", "4", "--seed", "0", "--quiet"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny ViT, an imagefolder labelled by it (every 5th image mislabelled), and which files are correct."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    root = tmp_path_factory.mktemp("evaluation")
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=NUM_CLASSES)
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 16, "width": 16})
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(NUM_IMAGES)]
    pixel_values = processor(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # spread the random model's predictions over the classes
        model.classifier.weight.mul_(20.0)
        model.classifier.bias.sub_(model(pixel_values=pixel_values).logits.mean(0))
        predicted = model(pixel_values=pixel_values).logits.argmax(1).tolist()
    assert len(set(predicted)) == NUM_CLASSES
    model_dir, data_dir = root / "model", root / "data"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    correct = {}
    for number, (array, guess) in enumerate(zip(arrays, predicted)):
        label = guess if number % 5 else (guess + 1) % NUM_CLASSES
        path = data_dir / str(label) / f"img{number:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        correct[f"{label}/{path.name}"] = number % 5 != 0
    return {"root": root, "model": model_dir, "data": data_dir, "correct": correct}


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp / "hf-cache"),
               TOKENIZERS_PARALLELISM="false")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], setup, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=setup["root"], env=_env(setup["root"]), capture_output=True, text=True,
                          timeout=timeout)


def _args(setup, output: Path, extra=RUN_ARGS) -> list[str]:
    return ["--model", str(setup["model"]), "--dataset", str(setup["data"]), "--output-dir", str(output), *extra]


def _names(split, setup) -> list[str]:
    """File of each dataset row, relative to the data folder (e.g. ``2/img007.png``)."""
    return [os.path.relpath(example["image"].filename, setup["data"]) for example in split]


def _shuffled_indices(split, names: list[str], setup, seed: int = 0) -> list[int]:
    """Dataset indices in ``Dataset.shuffle(seed)`` order: the protocol's shuffle."""
    return [names.index(name) for name in _names(split.shuffle(seed=seed), setup)]


def _rows(output: Path) -> list[dict]:
    return pq.read_table(output / "data" / "explanations.parquet").to_pylist()


@pytest.fixture(scope="module")
def single(setup):
    """The reference run: plain python, one process, through scripts/evaluate.py."""
    output = setup["root"] / "single"
    result = _run([sys.executable, str(REPO / "scripts" / "evaluate.py"), *_args(setup, output)], setup)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def test_output_folder_selection_and_curves(setup, single):
    from datasets import load_dataset, load_dataset_builder

    rows = _rows(single)
    config = json.loads((single / "config.json").read_text())
    curves = json.loads((single / "curves.json").read_text())
    for name in ("plots/curves.png", "plots/heatmaps.png", "plots/heatmaps_deletion.png", "README.md"):
        assert (single / name).is_file(), name
    assert config["kind"] == "evaluate" and config["methods"] == ["moxi", "full-shapley", "gradcam"]
    assert config["method_options"] == {"moxi": {"budget": "exact"},
                                        "full-shapley": {"num_samples": 4, "seed": 0, "sampler": "permutation"}}
    # Grad-CAM's own choice of layer: the last encoder layer's first LayerNorm of this 2-layer ViT.
    assert config["method_settings"] == {"gradcam": {"cam_layer": "vit.layers.1.layernorm_before"}}
    assert {"torch", "transformers", "datasets", "accelerate"} <= set(config["versions"])

    # Selection: the first 7 correctly classified images in Dataset.shuffle(seed=0) order.
    split = load_dataset("imagefolder", data_dir=str(setup["data"]), split="train")
    names = _names(split, setup)
    expected = [index for index in _shuffled_indices(split, names, setup) if setup["correct"][names[index]]][:7]
    indices = list(dict.fromkeys(row["dataset_index"] for row in rows))
    assert indices == expected
    assert config["selection"]["num_images"] == 7 and config["selection"]["correct"] == 7
    for row in rows:
        assert row["image"] == names[row["dataset_index"]]
        assert row["label"] == split[row["dataset_index"]]["label"] == row["predicted"]
        assert len(row["order"]) == 16 and sorted(row["order"]) == list(range(16))
        assert len(row["accuracy_curve"]) == len(row["confidence_curve"]) == 17
    # each image once per method × curve, in the documented order
    keys = [(row["dataset_index"], row["method"], row["curve"]) for row in rows]
    assert keys == [(i, m, c) for i in expected for m in config["methods"] for c in ("insertion", "deletion")]
    # curve-independent methods use one order for both curves
    by_key = {(row["dataset_index"], row["method"], row["curve"]): row for row in rows}
    for index in expected:
        assert by_key[(index, "gradcam", "insertion")]["order"] == by_key[(index, "gradcam", "deletion")]["order"]
        assert by_key[(index, "full-shapley", "insertion")]["order"] == by_key[(index, "full-shapley", "deletion")]["order"]
        # k = 0 is measured: the empty image (the same for every method) and the whole, correctly classified image
        assert len({by_key[(index, m, "insertion")]["confidence_curve"][0] for m in config["methods"]}) == 1
        assert all(by_key[(index, m, "deletion")]["accuracy_curve"][0] == 1.0 for m in config["methods"])
    assert {by_key[(index, "moxi", "insertion")]["accuracy_curve"][0] for index in expected} == {0.0, 1.0}

    # curves.json = the mean of the rows' curves; AUC = mean over k = 0..N
    for method in config["methods"]:
        for curve in ("insertion", "deletion"):
            entry = curves[method][curve]
            members = [row for row in rows if row["method"] == method and row["curve"] == curve]
            accuracy = np.mean([row["accuracy_curve"] for row in members], axis=0)
            confidence = np.mean([row["confidence_curve"] for row in members], axis=0)
            np.testing.assert_allclose(entry["accuracy"], accuracy, atol=1e-12)
            np.testing.assert_allclose(entry["confidence"], confidence, atol=1e-7)
            assert entry["auc"] == pytest.approx(np.mean(entry["accuracy"]))
            assert entry["confidence_auc"] == pytest.approx(np.mean(entry["confidence"]))
            assert entry["num_images"] == 7 and entry["num_players"] == 16
    assert curves["moxi"]["insertion"]["auc"] > curves["moxi"]["deletion"]["auc"]

    # load_dataset(OUTPUT) reads data/ only (not .partial/, curves.json, config.json)
    assert (single / ".partial" / "images").is_dir()
    builder = load_dataset_builder(str(single))
    files = [path for split_files in builder.config.data_files.values() for path in split_files]
    assert [Path(path).relative_to(single).as_posix() for path in files] == ["data/explanations.parquet"]
    assert load_dataset(str(single), split="train").num_rows == len(rows) == 7 * 3 * 2


def test_curves_checked_by_hand(setup, single):
    """Re-measure some rows' curves by running the model on the kept patches directly."""
    from transformers import AutoImageProcessor

    from moxi_hf.modeling import MoXIViTForImageClassification

    model = MoXIViTForImageClassification.from_pretrained(setup["model"]).eval()
    processor = AutoImageProcessor.from_pretrained(setup["model"])
    rows = _rows(single)
    checked = 0
    for row in rows[:12]:  # two images, every method and curve
        with Image.open(setup["data"] / row["image"]) as opened:
            image = opened.convert("RGB")
        pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"]
        order = row["order"]
        for k in range(len(order) + 1):
            kept = order[:k] if row["curve"] == "insertion" else sorted(set(range(16)) - set(order[:k]))
            with torch.no_grad():
                logits = model(pixel_values=pixel_values, embedding_mask=[kept]).logits[0]
            probability = torch.softmax(logits, 0)[row["label"]].item()
            assert row["confidence_curve"][k] == pytest.approx(probability, abs=1e-5)
            assert row["accuracy_curve"][k] == float(logits.argmax().item() == row["label"])
            checked += 1
    assert checked == 12 * 17


def test_auc_and_aggregation_toy():
    rows = [
        {"method": "m", "curve": "insertion", "accuracy_curve": [0, 1, 1], "confidence_curve": [0.1, 0.6, 0.8]},
        {"method": "m", "curve": "insertion", "accuracy_curve": [0, 0, 1], "confidence_curve": [0.3, 0.4, 0.9]},
        {"method": "m", "curve": "deletion", "accuracy_curve": [1, 0, 0], "confidence_curve": [0.9, 0.2, 0.1]},
    ]
    curves = aggregate_curves(rows, ["m"], ["insertion", "deletion"])
    insertion = curves["m"]["insertion"]
    assert insertion["accuracy"] == [0.0, 0.5, 1.0]
    assert insertion["auc"] == pytest.approx(0.5)  # (0 + 0.5 + 1) / 3: the mean over k = 0..N
    assert insertion["confidence"] == pytest.approx([0.2, 0.5, 0.85])
    assert insertion["confidence_auc"] == pytest.approx((0.2 + 0.5 + 0.85) / 3)
    assert insertion["num_images"] == 2 and insertion["num_players"] == 2
    assert curves["m"]["deletion"]["auc"] == pytest.approx(1 / 3) and curves["m"]["deletion"]["num_images"] == 1


@pytest.mark.slow
def test_two_processes_match_one(setup, single):
    """accelerate launch --multi_gpu --num_processes 2 on CPU (gloo): same images, orders, curves, scores."""
    output = setup["root"] / "two"
    result = _run([str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), "-m", "moxi_hf", "evaluate", *_args(setup, output)],
                  setup)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr  # every process left its process group before exiting
    assert _rows(output) == _rows(single)
    assert (output / "curves.json").read_text() == (single / "curves.json").read_text()
    assert (output / ".partial" / "selection.json").read_text() == (single / ".partial" / "selection.json").read_text()


KILLER = """
import os, sys
import moxi_hf.evaluation.state as state

limit, written = int(os.environ["MOXI_TEST_KILL_AFTER"]), []
original = state.write_image_result

def write_then_die(*args, **kwargs):
    original(*args, **kwargs)
    written.append(1)
    if len(written) >= limit:
        os._exit(9)  # like a kill: no cleanup, no final outputs

state.write_image_result = write_then_die
from moxi_hf.cli import main
sys.exit(main(["evaluate", *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_kill_and_resume(setup, single):
    output = setup["root"] / "resumed"
    killer = setup["root"] / "killer.py"
    killer.write_text(KILLER)
    env = _env(setup["root"]) | {"MOXI_TEST_KILL_AFTER": "3"}  # dies inside the second chunk of two images
    killed = subprocess.run([sys.executable, str(killer), *_args(setup, output)], cwd=setup["root"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-3000:]
    partial = sorted(path.name for path in (output / ".partial" / "images").iterdir())
    assert partial == ["000000.json", "000001.json", "000002.json"]
    assert not (output / "data").exists() and not (output / "curves.json").exists()
    first = (output / ".partial" / "images" / "000000.json").stat().st_mtime_ns

    resumed = _run([sys.executable, str(REPO / "scripts" / "evaluate.py"), *_args(setup, output)], setup)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (output / ".partial" / "images" / "000000.json").stat().st_mtime_ns == first  # finished chunk skipped
    rows = _rows(output)
    keys = [(row["dataset_index"], row["method"], row["curve"]) for row in rows]
    assert len(keys) == len(set(keys)) == 7 * 3 * 2  # no image duplicated or missing
    assert rows == _rows(single)
    assert (output / "curves.json").read_text() == (single / "curves.json").read_text()
    assert not list((output / ".partial" / "images").glob(".*"))  # no temporary files left


def test_changed_configuration_refused_and_overwrite(setup, tmp_path, capsys):
    output = tmp_path / "run"
    base = ["evaluate", *_args(setup, output, ["--num-images", "2", "--methods", "gradcam", "--curves", "insertion",
                                               "--quiet", "--device", "cpu"])]
    assert main(base) == 0
    config = (output / "config.json").read_text()
    assert main(base) == 0  # same configuration: resumes (nothing left to do), same output
    assert (output / "config.json").read_text() == config

    capsys.readouterr()
    assert main([*base, "--seed", "1"]) == 1
    message = capsys.readouterr().err
    assert "different configuration" in message and "seed" in message and "--overwrite" in message
    assert (output / "config.json").read_text() == config  # nothing touched
    with pytest.raises(MoXIError, match="methods"):
        evaluate(EvaluationConfig(output_dir=str(output), model=str(setup["model"]), dataset=str(setup["data"]),
                                  num_images=2, methods=["gradcam++"], curves=["insertion"], quiet=True, device="cpu"))

    assert main([*base, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((output / "config.json").read_text())["seed"] == 1

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["evaluate", *_args(setup, foreign, ["--num-images", "1", "--methods", "gradcam", "--quiet"])]) == 1
    assert "not empty" in capsys.readouterr().err


def test_per_class_selection_and_push(setup, tmp_path, monkeypatch):
    from datasets import load_dataset

    import moxi_hf.artifacts.hub

    pushed = []
    monkeypatch.setattr(moxi_hf.artifacts.hub, "push_artifacts", lambda folder, repo, private=False: pushed.append(
        (Path(folder), repo, private, (Path(folder) / "README.md").is_file())) or f"https://hub/{repo}")
    output = tmp_path / "per-class"
    assert main(["evaluate", *_args(setup, output, ["--per-class", "1", "--methods", "self-shapley",
                                                    "--curves", "deletion", "--batch-size", "4", "--quiet",
                                                    "--push-to-hub", "tester/run", "--hub-private"])]) == 0
    assert pushed == [(output.resolve(), "tester/run", True, True)]  # once, after the card was written
    rows = _rows(output)
    split = load_dataset("imagefolder", data_dir=str(setup["data"]), split="train")
    names = _names(split, setup)
    expected, seen = [], set()
    for index in _shuffled_indices(split, names, setup):
        label = split[index]["label"]
        if setup["correct"][names[index]] and label not in seen:
            seen.add(label)
            expected.append(index)
    assert [row["dataset_index"] for row in rows] == expected
    assert sorted(row["label"] for row in rows) == list(range(NUM_CLASSES))
    config = json.loads((output / "config.json").read_text())
    assert config["per_class"] == 1 and config["num_images"] is None
    assert config["selection"]["per_class_counts"] == {str(label): 1 for label in range(NUM_CLASSES)}


def test_streaming(setup, tmp_path):
    from datasets import load_dataset

    output = tmp_path / "streamed"
    assert main(["evaluate", *_args(setup, output, ["--streaming", "--shuffle-buffer", "8", "--num-images", "3",
                                                    "--methods", "attention-rollout", "--curves", "insertion",
                                                    "--quiet"])]) == 0
    rows = _rows(output)
    split = load_dataset("imagefolder", data_dir=str(setup["data"]), split="train")
    assert len(rows) == 3 and len({row["dataset_index"] for row in rows}) == 3
    for row in rows:
        assert setup["correct"][row["image"]]
        assert os.path.relpath(split[row["dataset_index"]]["image"].filename, setup["data"]) == row["image"]
    assert json.loads((output / "config.json").read_text())["streaming"] is True


def test_default_methods_follow_the_model(resnet_dir, vit_dir):
    from moxi_hf import Explainer
    from moxi_hf.evaluation import methods_for as _methods_for

    cnn = Explainer.from_pretrained(resnet_dir)
    assert _methods_for(cnn, None) == ["moxi", "self-shapley", "full-shapley", "gradcam", "gradcam++"]
    with pytest.raises(MoXIError, match="attention-rollout needs a ViT-family model"):
        _methods_for(cnn, ["gradcam", "attention-rollout"])
    assert "attention-rollout" in _methods_for(Explainer.from_pretrained(vit_dir), None)


def test_bad_inputs(setup, tmp_path, capsys):
    common = ["--model", str(setup["model"]), "--output-dir", str(tmp_path / "x"), "--quiet"]
    assert main(["evaluate", *common, "--dataset", str(setup["data"]), "--label-column", "nope"]) == 1
    assert "no column 'nope'" in capsys.readouterr().err
    assert main(["evaluate", *common, "--dataset", str(setup["data"]), "--split", "test"]) == 1
    assert "no split 'test'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", *common, "--num-images", "3", "--per-class", "1"])
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


# -- publishing: nothing of the local file system, pictures, re-plotting, push failures ----------


def _leaks(folder: Path, needles: list[str]) -> list[str]:
    """Files of ``folder`` (hidden ``.partial/`` excluded, parquet bytes included) containing a needle."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and ".partial" not in path.relative_to(folder).parts:
            data = path.read_bytes()
            found += [f"{path.relative_to(folder)}: {needle}" for needle in needles if needle.encode() in data]
    return found


@pytest.fixture(scope="module")
def explained(setup):
    """``moxi explain`` of one class folder of the evaluation's images, with the same model."""
    output = setup["root"] / "explained"
    assert main(["explain", "--model", str(setup["model"]), "--image", str(setup["data"] / "0"), "--method",
                 "self-shapley", "--output-dir", str(output), "--quiet"]) == 0
    return output


def test_outputs_publish_nothing_of_the_file_system(setup, single, explained, tmp_path_factory):
    needles = [str(tmp_path_factory.getbasetemp()), str(setup["root"]), str(Path.home())]
    needles = [needle for needle in needles if len(needle) > 1]
    assert _leaks(single, needles) == []
    assert _leaks(explained, needles) == []
    config = json.loads((single / "config.json").read_text())
    assert config["model"] == "model" and config["dataset"] == "data"  # local folders by their name
    assert config["schema_version"] == SCHEMA_VERSION == 3
    # the hidden resume state may keep the absolute folders (it tells two folders of the same name apart)
    assert json.loads((single / ".partial" / "source.json").read_text())["model"] == str(setup["model"])
    rows = pq.read_table(explained / "data" / "explanations.parquet").to_pylist()
    assert sorted(row["image"] for row in rows) == sorted(path.name for path in (setup["data"] / "0").iterdir())


def test_pictures_are_an_image_feature_of_what_the_model_saw(setup, single, explained):
    """Small runs carry the picture in every row (a datasets Image feature, encoded bytes, no path)."""
    from datasets import Image as ImageFeature
    from datasets import load_dataset
    from transformers import AutoImageProcessor

    from moxi_hf.plotting import model_view

    processor = AutoImageProcessor.from_pretrained(setup["model"])
    for folder, root in ((single, setup["data"]), (explained, setup["data"] / "0")):
        assert json.loads((folder / "config.json").read_text())["pictures"] == "rows"
        assert not (folder / "data" / "images.parquet").exists()
        rows = load_dataset(str(folder), split="train")  # the card's default config
        assert isinstance(rows.features["picture"], ImageFeature)
        raw = pq.read_table(folder / "data" / "explanations.parquet").column("picture").to_pylist()
        assert all(item["bytes"] and item["path"] is None for item in raw)  # bytes, never a local path
        for row in rows.select(range(2)):
            with Image.open(root / row["image"]) as opened:
                expected = np.asarray(model_view(opened, processor))
            np.testing.assert_array_equal(np.asarray(row["picture"].convert("RGB")), expected)


def test_large_runs_store_each_picture_once_in_its_own_config(tmp_path, monkeypatch):
    from datasets import Image as ImageFeature
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    import moxi_hf
    from moxi_hf.artifacts import folder as artifact_folder
    from moxi_hf.artifacts import save_artifacts

    rows = [{"dataset_index": index, "image": f"{index}.png", "label": 0, "predicted": 0, "method": method,
             "curve": "insertion", "order": [0, 1, 2, 3], "scores": None, "heatmap": [1.0, 0, 0, 0],
             "patches_needed": 1, "accuracy_curve": [0.0, 1, 1, 1, 1], "confidence_curve": [0.1, 0.9, 0.9, 0.9, 0.9],
             "grid_rows": 2, "grid_cols": 2} for index in range(3) for method in ("moxi", "gradcam")]
    rng = np.random.default_rng(0)
    pictures = [(index, f"{index}.png", Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
                for index in range(3)]
    monkeypatch.setattr(artifact_folder, "ROW_PICTURES_MAX_BYTES", 100)  # as if the pictures were large
    out = save_artifacts(tmp_path / "big", rows, None, {"methods": ["moxi", "gradcam"]}, pictures=pictures)
    assert json.loads((out / "config.json").read_text())["pictures"] == "images"
    assert "picture" not in pq.read_schema(out / "data" / "explanations.parquet").names
    images = load_dataset(str(out), "images", split="train")
    assert isinstance(images.features["picture"], ImageFeature) and images["dataset_index"] == [0, 1, 2]
    card = DatasetCard.load(out / "README.md").data.to_dict()
    assert [config["config_name"] for config in card["configs"]] == ["default", "images"]
    loaded = moxi_hf.load_artifacts(out)
    assert sorted(loaded.pictures()) == [0, 1, 2]
    np.testing.assert_array_equal(np.asarray(loaded.pictures()[1]), np.asarray(pictures[1][2]))
    assert len(loaded.plot_heatmaps().axes) == 3 * 3 + 1  # and one rank legend


def test_load_artifacts_replots_explain_and_evaluate_folders_alike(single, explained, tmp_path):
    from matplotlib.figure import Figure

    import moxi_hf

    for folder in (explained, single):
        artifacts = moxi_hf.load_artifacts(folder)
        for metric in ("accuracy", "confidence"):
            figure = artifacts.plot_curves(metric)
            assert isinstance(figure, Figure)
            lines = [line for ax in figure.axes for line in ax.get_lines()]
            entries = [entry for by_curve in artifacts.curves.values() for entry in by_curve.values()]
            assert len(lines) == len(entries) and all(entry["num_players"] == 16 for entry in entries)
            np.testing.assert_allclose(sorted(lines[0].get_ydata()), sorted(entries[0][metric]))
        grid = artifacts.plot_heatmaps()
        assert isinstance(grid, Figure) and len(grid.axes) > 1
        assert artifacts.schema_version == SCHEMA_VERSION and len(artifacts.pictures()) > 0
        assert moxi_hf.Artifacts.from_pretrained(folder).curves == artifacts.curves
        copy = artifacts.save_pretrained(tmp_path / folder.name)
        assert not (copy / ".partial").exists() and moxi_hf.load_artifacts(copy).curves == artifacts.curves


def test_folders_of_the_previous_release_still_load(explained, tmp_path):
    """No schema_version, no num_players, no pictures: loads and re-plots the same way."""
    import shutil as sh

    import moxi_hf

    old = tmp_path / "old"
    sh.copytree(explained, old)
    config = json.loads((old / "config.json").read_text())
    del config["schema_version"]
    (old / "config.json").write_text(json.dumps(config))
    curves = json.loads((old / "curves.json").read_text())
    for by_curve in curves.values():
        for entry in by_curve.values():
            del entry["num_players"]
    (old / "curves.json").write_text(json.dumps(curves))
    from moxi_hf.artifacts import write_rows

    rows = pq.read_table(old / "data" / "explanations.parquet").drop(["picture"]).to_pylist()
    write_rows(old, rows, config["label_names"])  # the rows as the previous release wrote them
    artifacts = moxi_hf.load_artifacts(old)
    assert artifacts.schema_version == 1 and artifacts.images is None and artifacts.pictures() == {}
    assert artifacts.curves == moxi_hf.load_artifacts(explained).curves
    assert artifacts.plot_curves().axes and artifacts.plot_heatmaps().axes


def test_push_failure_keeps_results_and_says_how_to_retry(setup, tmp_path, monkeypatch, capsys):
    import moxi_hf.artifacts.hub

    def offline(folder, repo, private=False):
        raise MoXIError(f"could not reach the Hub at https://huggingface.co while creating dataset repo {repo}")

    monkeypatch.setattr(moxi_hf.artifacts.hub, "push_artifacts", offline)
    output = tmp_path / "pushed"
    code = main(["evaluate", *_args(setup, output, ["--num-images", "2", "--methods", "gradcam", "--curves",
                                                    "insertion", "--push-to-hub", "tester/run"])])
    captured = capsys.readouterr()
    assert code == 1
    assert "gradcam" in captured.out and "acc AUC" in captured.out  # the results were printed first
    assert f"results saved in {output.resolve()}" in captured.err
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("moxi: error: could not reach the Hub") and "results are saved" in last
    assert f"moxi push {output.resolve()} --repo-id tester/run" in last
    assert (output / "README.md").is_file() and (output / "curves.json").is_file()


def test_hub_datasets_are_referred_to_unless_embedding_is_asked(setup, tmp_path, monkeypatch):
    import moxi_hf.evaluation.run as run

    monkeypatch.setattr(run, "is_local", lambda path: False)  # take the local folder for a Hub dataset
    small = ["--num-images", "2", "--methods", "gradcam", "--curves", "insertion", "--quiet"]
    assert main(["evaluate", *_args(setup, tmp_path / "refer", small)]) == 0
    config = json.loads((tmp_path / "refer" / "config.json").read_text())
    assert config["embed_images"] is False and config.get("pictures") is None
    assert "picture" not in pq.read_schema(tmp_path / "refer" / "data" / "explanations.parquet").names
    assert not (tmp_path / "refer" / "data" / "images.parquet").exists()
    assert config["dataset"] == "data" and config["split"]  # the rows refer to dataset + split + index

    assert main(["evaluate", *_args(setup, tmp_path / "embed", [*small, "--embed-images"])]) == 0
    config = json.loads((tmp_path / "embed" / "config.json").read_text())
    assert config["embed_images"] is True and config["pictures"] == "rows"
    assert "picture" in pq.read_schema(tmp_path / "embed" / "data" / "explanations.parquet").names


def test_interactions_are_stored_for_moxi_rows_and_summarised(setup, tmp_path, capsys):
    from moxi_hf.evaluation import format_summary
    from moxi_hf.interactions import interaction_share

    output = tmp_path / "interactions"
    assert main(["evaluate", *_args(setup, output, ["--num-images", "3", "--methods", "moxi", "gradcam",
                                                    "--interactions", "--interaction-top", "3", "--device", "cpu"])]) == 0
    printed = capsys.readouterr().out
    rows = _rows(output)
    for row in rows:
        if row["method"] == "moxi":
            gains, found = row["gains"], row["interactions"]
            assert len(gains["total"]) == len(row["order"]) == 16 and found["players"] == row["order"][:3]
            np.testing.assert_allclose(np.add(gains["self"], gains["interaction"]), gains["total"], atol=1e-5)
            matrix = np.asarray(found["matrix"])
            assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T) and not np.diag(matrix).any()
        else:
            assert row["gains"] is None and row["interactions"] is None
    curves = json.loads((output / "curves.json").read_text())
    for curve in ("insertion", "deletion"):
        chosen = [row for row in rows if row["method"] == "moxi" and row["curve"] == curve
                  and row["patches_needed"] >= 1]
        shares = [interaction_share(row["gains"], row["patches_needed"]) for row in chosen]
        entry = curves["moxi"][curve]
        assert entry["interaction_share"] == pytest.approx(np.mean(shares), abs=1e-6)
        assert entry["interaction_share_images"] == len(shares) > 0
        assert "interaction_share" not in curves["gradcam"][curve]
    assert "interaction share" in printed and "interaction share" in format_summary(curves)
    card = (output / "README.md").read_text()
    assert "## Interactions" in card and f"| moxi | insertion | {curves['moxi']['insertion']['interaction_share']:.3f}" in card
    assert json.loads((output / "config.json").read_text())["interaction_top"] == 3
    # Without --interactions nothing changes: no share, no arrays; a different K is a different configuration.
    assert main(["evaluate", *_args(setup, output, ["--num-images", "3", "--methods", "moxi", "gradcam",
                                                    "--interactions", "--device", "cpu", "--quiet"])]) == 1
    assert "interaction_top" in capsys.readouterr().err
    with pytest.raises(MoXIError, match="interaction-top"):
        EvaluationConfig(output_dir=str(tmp_path / "x"), interaction_top=1).validate()


def test_budget_runs_end_to_end_and_is_recorded(setup, tmp_path, capsys):
    output = tmp_path / "budget"
    assert main(["evaluate", *_args(setup, output, ["--num-images", "2", "--methods", "moxi", "--budget", "fast",
                                                    "--candidates", "3", "--refresh", "4", "--interactions",
                                                    "--device", "cpu", "--quiet"])]) == 0
    config = json.loads((output / "config.json").read_text())
    assert config["method_options"] == {"moxi": {"budget": "fast", "candidates": 3, "refresh": 4, "warmup": 8}}
    rows = _rows(output)
    assert len(rows) == 4
    for row in rows:
        assert sorted(row["order"]) == list(range(16)) and len(row["accuracy_curve"]) == 17
        np.testing.assert_allclose(np.add(row["gains"]["self"], row["gains"]["interaction"]), row["gains"]["total"],
                                   atol=1e-5)
    # fast alone takes its preset, which the settings name
    preset = BUDGETS["fast"]
    alone = EvaluationConfig(output_dir=str(tmp_path / "x"), methods=["moxi"], budget="fast")
    assert method_options("moxi", alone) == {"budget": "fast", **preset}
    capsys.readouterr()
    for extra, message in ((["--methods", "gradcam", "--budget", "fast"], "--budget only applies to moxi"),
                           (["--methods", "moxi", "--candidates", "3"], "apply to budget 'fast'")):
        assert main(["evaluate", *_args(setup, tmp_path / "refused", ["--num-images", "1", "--quiet", *extra])]) == 1
        err = capsys.readouterr().err
        assert err.startswith("moxi: error: ") and message in err, err
    assert not (tmp_path / "refused").exists()


def test_a_long_evaluation_says_so_before_it_starts(setup, tmp_path, capsys, monkeypatch):
    extra = ["--num-images", "2", "--methods", "moxi", "self-shapley", "--device", "cpu"]
    assert main(["evaluate", *_args(setup, tmp_path / "short", extra)]) == 0
    assert "estimated" not in capsys.readouterr().err
    monkeypatch.setattr("moxi_hf.progress.SLOW_RUN_SECONDS", 0.0)
    assert main(["evaluate", *_args(setup, tmp_path / "long", extra)]) == 0
    err = capsys.readouterr().err
    assert "moxi evaluate: this run is estimated at about" in err and "for 2 image(s)" in err
    assert "faster: --budget fast" in err and "--early-stop" not in err  # evaluations need complete orders
