"""Artifact folders: save → load_dataset / load_artifacts round trip, card, folder checks (offline)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from datasets import ClassLabel, List, Value, load_dataset
from huggingface_hub import DatasetCard

from artifact_rows import CONFIG, LABELS, METHODS, assert_rows_equal, curves_plot, make_rows
from moxi_hf.artifacts import (
    CURVE_KEYS,
    DATA_FILE,
    ROW_COLUMNS,
    artifact_dir_problem,
    check_artifact_dir,
    is_artifact_dir,
    load_artifacts,
    save_artifacts,
    save_explanations,
    write_card,
)
from moxi_hf.errors import MoXIError
from moxi_hf.explanation import Explanation
from moxi_hf.metrics import aggregate_curves


@pytest.fixture
def saved(tmp_path):
    rows = make_rows()
    curves = aggregate_curves(rows)
    out = tmp_path / "run"
    save_artifacts(out, rows, curves, dict(CONFIG), label_names=LABELS, plots={"curves": curves_plot()})
    return out, rows, curves


def test_round_trip_through_load_dataset(saved):
    out, rows, _ = saved
    dataset = load_dataset(str(out), split="train", cache_dir=str(out.parent / "cache"))  # the card's `configs`
    # point at the Parquet file only; a cache of its own: the datasets cache is named after the folder only
    features = dataset.features
    assert features["order"] == List(Value("int64"))
    assert features["heatmap"] == List(Value("float32"))
    assert features["accuracy_curve"] == List(Value("float32"))
    assert features["confidence_curve"] == List(Value("float32"))
    assert isinstance(features["label"], ClassLabel) and features["label"].names == LABELS
    assert_rows_equal(dataset, rows)


def test_load_artifacts_local(saved):
    out, rows, curves = saved
    artifacts = load_artifacts(out)
    assert_rows_equal(artifacts.rows, rows)
    assert artifacts.curves == json.loads(json.dumps(curves))
    assert artifacts.config["label_names"] == LABELS == artifacts.label_names
    assert artifacts.config["max_tokens"] == 4096 and "torch" in artifacts.config["versions"]
    assert [p.name for p in artifacts.plots] == ["curves.png"]
    assert artifacts.auc_table()["gradcam"]["deletion"]["auc"] == pytest.approx(curves["gradcam"]["deletion"]["auc"])


def test_curves_have_the_agreed_keys(saved):
    out, rows, _ = saved
    curves = json.loads((out / "curves.json").read_text())
    assert set(curves) == set(METHODS)
    for method in METHODS:
        for curve in ("insertion", "deletion"):
            entry = curves[method][curve]
            assert set(entry) == set(CURVE_KEYS)
            players = rows[0]["grid_rows"] * rows[0]["grid_cols"]
            assert len(entry["accuracy"]) == len(entry["confidence"]) == players + 1
            assert entry["num_images"] == 3
            assert entry["auc"] == pytest.approx(float(np.mean(entry["accuracy"])))
            mine = [r["accuracy_curve"] for r in rows if r["method"] == method and r["curve"] == curve]
            np.testing.assert_allclose(entry["accuracy"], np.mean(mine, axis=0))


def test_card_metadata_and_body(saved):
    out, _, curves = saved
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert {"explainability", "moxi", "interpretability"} <= set(data["tags"])
    assert data["task_categories"] == ["image-classification"]
    assert data["license"] and data["base_model"] == "google/vit-base-patch16-224"
    assert data["source_datasets"] == ["ILSVRC/imagenet-1k"]
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}]
    names = data["dataset_info"]["features"][2]["dtype"]["class_label"]["names"]
    assert list(names.values()) == LABELS
    body = card.text
    assert "![curves](plots/curves.png)" in body and (out / "plots" / "curves.png").is_file()
    for method in METHODS:
        ins, dele = curves[method]["insertion"]["auc"], curves[method]["deletion"]["auc"]
        assert f"| {method} | {ins:.3f} | {dele:.3f} |" in body
    for column in ROW_COLUMNS:
        assert f"| {column} |" in body
    assert "| split | validation |" in body


def test_local_model_path_is_not_a_base_model(tmp_path):
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    rows = make_rows(1)
    save_artifacts(tmp_path / "out", rows, {}, {"model": str(model_dir), "dataset": "mnist-local"})
    data = DatasetCard.load(tmp_path / "out" / "README.md").data.to_dict()
    assert "base_model" not in data and "source_datasets" not in data
    assert "## Results" not in DatasetCard.load(tmp_path / "out" / "README.md").text  # no curves, no table


def test_label_without_names_is_int(tmp_path):
    rows = make_rows(2)
    save_artifacts(tmp_path / "out", rows, {}, {})
    dataset = load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.features["label"] == Value("int64")
    assert_rows_equal(dataset, rows)
    assert load_artifacts(tmp_path / "out").label_names is None


def test_hidden_partial_results_are_not_data(saved):
    out, rows, _ = saved
    partial = out / ".partial"
    partial.mkdir()
    (partial / "shard-0.json").write_text(json.dumps([{"oops": 1}]))
    (partial / "rows.parquet").write_bytes((out / DATA_FILE).read_bytes())
    assert len(load_dataset(str(out), split="train", cache_dir=str(out.parent / "cache"))) == len(rows)
    assert len(load_artifacts(out).rows) == len(rows)


def test_no_secrets_and_no_temporaries_written(tmp_path, monkeypatch):
    secret = "hf_ArtifactSecretToken0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    config = {**CONFIG, "token": secret, "push_command": f"moxi push --token {secret}", "hf_token": "x"}
    save_artifacts(tmp_path / "out", make_rows(1), {}, config)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert all(not p.name.startswith(".") for p in files), files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    saved_config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "token" not in saved_config and "hf_token" not in saved_config
    assert saved_config["push_command"] == "moxi push --token ***"
    assert saved_config["max_tokens"] == 4096  # not a credential


def test_artifact_dir_checks(tmp_path, saved):
    out, _, _ = saved
    assert is_artifact_dir(out) and check_artifact_dir(out) == out
    assert not is_artifact_dir(tmp_path / "missing")
    with pytest.raises(MoXIError, match="does not exist"):
        check_artifact_dir(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MoXIError, match=r"not a moxi artifact folder \(missing data/explanations.parquet, "
                                        r"config.json, README.md\)"):
        check_artifact_dir(empty)
    (empty / ".partial").mkdir()
    assert "unfinished evaluation results in .partial/" in artifact_dir_problem(empty)
    (out / "README.md").unlink()
    with pytest.raises(MoXIError, match=r"missing README.md\); recreate the card with .*write_card"):
        check_artifact_dir(out)
    write_card(out)  # everything else is read back from the folder
    assert is_artifact_dir(out)
    assert "![curves](plots/curves.png)" in DatasetCard.load(out / "README.md").text


def test_load_artifacts_bad_input(tmp_path):
    with pytest.raises(MoXIError, match="neither an existing folder nor a Hub dataset repo id"):
        load_artifacts(tmp_path / "no" / "such" / "dir")
    (tmp_path / "plain").mkdir()
    with pytest.raises(MoXIError, match="not a moxi artifact folder"):
        load_artifacts(tmp_path / "plain")


def test_save_explanations_from_a_real_model(tmp_path, vit_dir):
    from PIL import Image

    from moxi_hf import Explainer

    explainer = Explainer.from_pretrained(vit_dir)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        path = tmp_path / f"in{index}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    explanations = explainer.explain_batch(paths, method="self-shapley", curve="insertion")
    # a second method for the same images, built by hand (keeps the test fast)
    explanations += [Explanation(**{**e.to_dict(), "method": "random", "scores": None, "grid": e.grid})
                     for e in explanations]
    out = save_explanations(tmp_path / "explain", explanations, model=vit_dir)
    assert is_artifact_dir(out)
    artifacts = load_artifacts(out)
    assert len(artifacts.rows) == 4
    assert artifacts.rows["dataset_index"] == [0, 1, 0, 1]  # one index per distinct image
    names = [os.path.basename(path) for path in paths]  # file names only: nothing of the file system
    assert artifacts.rows["image"] == names + names
    assert artifacts.rows["order"][0] == explanations[0].order
    np.testing.assert_allclose(artifacts.rows["heatmap"][1], np.ravel(explanations[1].heatmap))
    assert artifacts.config["kind"] == "explain" and artifacts.config["model"] == os.path.basename(vit_dir)
    assert artifacts.config["methods"] == ["self-shapley", "random"]
    entry = artifacts.curves["self-shapley"]["insertion"]
    assert set(entry) == set(CURVE_KEYS) and entry["num_images"] == 2
    expected = np.mean([e.curve_probabilities for e in explanations[:2]], axis=0)
    np.testing.assert_allclose(entry["confidence"], expected, rtol=1e-5)
    assert entry["auc"] == pytest.approx(np.mean([[float(p == e.label) for p in e.curve_predictions]
                                                  for e in explanations[:2]]))
    assert "| self-shapley |" in artifacts.card.text


def test_save_explanations_without_curves_or_names(tmp_path):
    grid = (2, 2)
    explanations = [
        Explanation(method="moxi", curve="deletion", label=1, order=[3, 1], heatmap=[[0, 1], [0, 2]],
                    patches_needed=2, grid=grid, predicted=1, model="some/model"),  # stopped early: no full curve
        Explanation(method="moxi", curve="deletion", label=0, order=[0, 1, 2, 3], heatmap=[[1, 0], [0, 0]],
                    patches_needed=1, grid=grid, predicted=0, curve_probabilities=[0.9, 0.2, 0.1, 0.1, 0.0],
                    curve_predictions=[0, 1, 1, 1, 1]),
    ]
    out = save_explanations(tmp_path / "e", explanations, label_names=["zero", "one"])
    artifacts = load_artifacts(out)
    assert artifacts.rows["dataset_index"] == [0, 1]
    assert artifacts.rows.features["label"].names == ["zero", "one"]
    assert artifacts.rows["accuracy_curve"][0] == []  # no curve for the early-stopped order
    assert artifacts.curves["moxi"]["deletion"]["num_images"] == 1
    assert artifacts.curves["moxi"]["deletion"]["accuracy"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert artifacts.config["model"] == "some/model"


# -- damaged folders: one line naming the file and what is wrong with it ----------------------------


def _damage(out, name: str, content: bytes | None = None, keep: float | None = None) -> None:
    path = out / name
    data = path.read_bytes()
    path.write_bytes(content if content is not None else data[: int(len(data) * keep)])


@pytest.mark.parametrize("name, content, keep, expected", [
    ("config.json", None, 0.5, r"config\.json is not valid JSON \("),
    ("config.json", b"[1, 2]", None, r"config\.json does not hold a JSON object \(it holds a list\)"),
    ("curves.json", b"{\"moxi\": ", None, r"curves\.json is not valid JSON \("),
    (DATA_FILE, b"garbage", None, r"data/explanations\.parquet is not a readable Parquet file \("),
    (DATA_FILE, None, 0.6, r"data/explanations\.parquet is not a readable Parquet file \("),
    ("README.md", b"---\nlicense: [mit\n---\n# card\n", None, r"README\.md has a metadata block that is not valid YAML"),
], ids=["truncated-config", "config-list", "truncated-curves", "garbage-rows", "truncated-rows", "bad-card"])
def test_a_damaged_file_is_named_in_one_line(saved, name, content, keep, expected):
    out, _, _ = saved
    _damage(out, name, content, keep)
    with pytest.raises(MoXIError, match=expected) as error:
        load_artifacts(out)
    assert "\n" not in str(error.value) and str(out) in str(error.value)


def test_rows_of_another_kind_are_named(saved):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, _, _ = saved
    pq.write_table(pa.table({"text": ["a", "b"]}), out / DATA_FILE)
    with pytest.raises(MoXIError, match=r"data/explanations\.parquet holds no moxi rows: no column dataset_index, "):
        load_artifacts(out)


def test_a_damaged_images_file_is_named(saved):
    out, _, _ = saved
    (out / "data" / "images.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(MoXIError, match=r"data/images\.parquet is not a readable Parquet file"):
        load_artifacts(out)
