"""Interactions in the outputs: ``moxi explain --interactions``, ``moxi compare``, the artifact rows, the library's compare."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import moxi_hf
from moxi_hf import Explainer
from moxi_hf.cli import main
from moxi_hf.defaults import default_model_path, default_sample_images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def samples():
    return default_sample_images()


@pytest.fixture(scope="module")
def explained(tmp_path_factory, samples):
    """``moxi explain --interactions --interaction-top 4`` on two sample digits."""
    output = tmp_path_factory.mktemp("explain") / "out"
    assert main(["explain", "--quiet", "--interactions", "--interaction-top", "4", "--image", str(samples[0]),
                 str(samples[1]), "--output-dir", str(output)]) == 0
    return output


def test_explain_interactions_writes_the_picture_and_the_fields(explained, samples):
    for sample in samples[:2]:
        folder = explained / sample.stem
        assert (folder / "interactions.png").read_bytes()[:8] == PNG_SIGNATURE
        data = json.loads((folder / "explanation.json").read_text())
        gains, found = data["gains"], data["interactions"]
        assert set(gains) == {"total", "self", "interaction"}
        assert all(len(values) == len(data["order"]) == 49 for values in gains.values())
        np.testing.assert_allclose(np.add(gains["self"], gains["interaction"]), gains["total"], atol=1e-5)
        # the gain of each step is MoXI's score of the player taken
        np.testing.assert_allclose(gains["total"], [data["scores"][p] for p in data["order"]], atol=1e-5)
        assert found["players"] == data["order"][:4]
        matrix = np.asarray(found["matrix"])
        assert matrix.shape == (4, 4) and np.array_equal(matrix, matrix.T) and not np.diag(matrix).any()
    assert json.loads((explained / "config.json").read_text())["interaction_top"] == 4


def test_the_artifact_rows_carry_the_fields_back_into_explanations(explained, samples):
    artifacts = moxi_hf.load_artifacts(explained)
    assert artifacts.schema_version == 3
    explanations = artifacts.explanations()
    assert len(explanations) == 2
    for explanation in explanations:
        data = json.loads((explained / explanation.image.rsplit(".", 1)[0] / "explanation.json").read_text())
        assert explanation.order == data["order"] and explanation.label == data["label"]
        np.testing.assert_allclose(explanation.heatmap, data["heatmap"], rtol=1e-6)
        assert explanation.interactions["players"] == data["interactions"]["players"]
        np.testing.assert_allclose(explanation.interactions["matrix"], data["interactions"]["matrix"], rtol=1e-6)
        for key in ("total", "self", "interaction"):
            np.testing.assert_allclose(explanation.gains[key], data["gains"][key], rtol=1e-6, atol=1e-6)
        assert explanation.display_image is not None
        assert len(explanation.plot_interactions().axes) == 3
    assert artifacts.explanations(method="gradcam") == []
    assert "| gains |" in (explained / "README.md").read_text()


def test_folders_without_the_columns_still_load(explained, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(explained, old)
    table = pq.read_table(old / "data" / "explanations.parquet").drop(["gains", "interactions"])
    pq.write_table(table, old / "data" / "explanations.parquet")
    config = json.loads((old / "config.json").read_text())
    config["schema_version"] = 2
    (old / "config.json").write_text(json.dumps(config))
    artifacts = moxi_hf.load_artifacts(old)
    assert artifacts.schema_version == 2
    explanations = artifacts.explanations()
    assert [e.order for e in explanations] == [e.order for e in moxi_hf.load_artifacts(explained).explanations()]
    assert all(e.gains is None and e.interactions is None for e in explanations)


def test_interaction_top_is_checked(tmp_path, samples, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["explain", "--interactions", "--interaction-top", "1"])
    assert raised.value.code == 2 and "at least 2" in capsys.readouterr().err
    assert main(["explain", "--quiet", "--interaction-top", "3", "--image", str(samples[0]),
                 "--output-dir", str(tmp_path / "out")]) == 1
    assert "--interaction-top only applies with --interactions" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_figure_is_drawn_over_the_model_view(vit_dir, tmp_path):
    explainer = Explainer.from_pretrained(vit_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    explanation = explainer.explain(image, interactions=True, interaction_top=3)
    drawn = explanation.plot_interactions().axes[0].images[0].get_array()
    assert drawn.shape[:2] == explanation.display_image.size[::-1] == (16, 16)
    explanation.display_image = None  # falls back to the image given
    assert explanation.plot_interactions().axes[0].images[0].get_array().shape[:2] == (20, 24)


def test_compare_adds_moxi_interactions_and_owns_its_folder(tmp_path, samples, capsys):
    output = tmp_path / "compare"
    argv = ["compare", "--quiet", "--methods", "moxi", "gradcam", "--interaction-top", "3", "--output-dir", str(output)]
    assert main([*argv, "--image", str(samples[0])]) == 0
    folder = output / samples[0].stem
    assert (folder / "compare_interactions.png").read_bytes()[:8] == PNG_SIGNATURE
    data = json.loads((folder / "compare.json").read_text())
    moxi, cam = data["methods"]["moxi"]["explanation"], data["methods"]["gradcam"]["explanation"]
    assert moxi["interactions"]["players"] == moxi["order"][:3] and len(moxi["gains"]["self"]) == 49
    assert cam["interactions"] is None and cam["gains"] is None
    assert json.loads((output / "config.json").read_text())["kind"] == "compare"

    assert main([*argv, "--image", str(samples[1])]) == 0  # its own folder: replaced as a whole
    assert sorted(path.name for path in output.iterdir() if path.is_dir()) == [samples[1].stem]
    assert "replacing the previous moxi compare output" in capsys.readouterr().err

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["compare", "--quiet", "--methods", "gradcam", "--image", str(samples[0]),
                 "--output-dir", str(foreign)]) == 1
    assert "not a moxi compare output" in capsys.readouterr().err
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]
    assert main(["compare", "--quiet", "--methods", "gradcam", "--image", str(samples[0]), "--output-dir",
                 str(foreign), "--overwrite"]) == 0
    assert not (foreign / "notes.txt").exists() and (foreign / samples[0].stem / "compare.png").is_file()
    assert not (foreign / samples[0].stem / "compare_interactions.png").exists()  # no MoXI, no picture


def test_the_library_compare(samples):
    from moxi_hf.compare import compare_methods, comparison_to_dict

    assert moxi_hf.compare_methods is compare_methods and moxi_hf.comparison_to_dict is comparison_to_dict
    explainer = Explainer.from_pretrained(default_model_path())
    image = samples[2]
    results = compare_methods(explainer, [image], ["moxi", "gradcam"], "deletion", interaction_top=5)
    moxi = results[0]["methods"]["moxi"]
    alone = explainer.explain(image, "moxi", "deletion")
    assert moxi["heatmap"].order == alone.order and moxi["deletion"]["order"] == alone.order
    assert moxi["insertion"]["order"] == explainer.explain(image, "moxi", "insertion").order
    assert len(moxi["heatmap"].interactions["players"]) == 5 and moxi["heatmap"].gains is not None
    assert comparison_to_dict(results[0], "x.png")["methods"]["moxi"]["explanation"]["interactions"] is not None
