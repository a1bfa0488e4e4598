"""Local datasets for ``moxi evaluate``: how rows name their images, and class folders matched to the model's labels."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from moxi_hf.cli import main
from moxi_hf.errors import MoXIError
from moxi_hf.evaluation.data import DataSource

MNIST = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist"
#: the sample digits of the default model: digit -> file
DIGITS = {int(path.stem.split("_")[1]): path for path in (MNIST / "samples").glob("digit_*.png")}
QUICK = ["--model", str(MNIST), "--methods", "self-shapley", "--curves", "insertion", "--quiet"]


def rows_of(output: Path) -> list[dict]:
    return pq.read_table(output / "data" / "explanations.parquet").to_pylist()


def published_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and ".partial" not in path.relative_to(folder).parts]


# -- image names in the rows ----------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("{root}/3/scan.png", "3/scan.png"),                  # inside the dataset folder: relative to it
    ("{root}/../secret/medical/scan_5.png", "scan_5.png"),  # outside: the file name only
    ("/home/bob/alice-secret/scan_6.png", "scan_6.png"),
])
def test_local_dataset_images_are_named_inside_the_folder_or_by_file_name(tmp_path, path, expected):
    root = tmp_path / "ds"
    source = DataSource(dataset=None, split="train", label_names=None, num_classes=None, local_root=str(root),
                        decoder=None)
    name = source.identifier({"path": path.format(root=root), "bytes": None})
    assert name == expected
    assert not os.path.isabs(name) and ".." not in Path(name).parts


def test_hub_dataset_images_are_named_by_file_name():
    source = DataSource(dataset=None, split="validation", label_names=None, num_classes=None, local_root=None,
                        decoder=None)
    assert source.identifier({"path": "/root/.cache/huggingface/x/ILSVRC2012_val_00000001.JPEG"}) == \
        "ILSVRC2012_val_00000001.JPEG"


def test_absolute_image_paths_of_a_dataset_never_reach_the_outputs(tmp_path):
    """A dataset folder whose parquet names images by absolute paths elsewhere on the machine."""
    import datasets

    secret = tmp_path / "home" / "bob" / "alice-secret" / "medical"
    secret.mkdir(parents=True)
    files = []
    for digit in (3, 4):
        target = secret / f"scan_{digit}.png"
        shutil.copy(DIGITS[digit], target)
        files.append(str(target))
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    features = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(names=[str(i) for i in range(10)]))
    datasets.Dataset.from_dict({"image": files, "label": [3, 4]}, features=features).to_parquet(
        str(folder / "data" / "validation.parquet"))
    output = tmp_path / "out"
    assert main(["evaluate", *QUICK, "--dataset", str(folder), "--num-images", "2", "--output-dir", str(output)]) == 0
    assert sorted(row["image"] for row in rows_of(output)) == ["scan_3.png", "scan_4.png"]
    for path in published_files(output):
        data = path.read_bytes()
        for needle in ("alice-secret", "/home/bob", "../", str(tmp_path)):
            assert needle.encode() not in data, (path, needle)
    # resume keys on the dataset index: a rerun reuses every finished image
    finished = sorted((output / ".partial" / "images").glob("*.json"))
    stamps = [path.stat().st_mtime_ns for path in finished]
    assert main(["evaluate", *QUICK, "--dataset", str(folder), "--num-images", "2", "--output-dir", str(output)]) == 0
    assert [path.stat().st_mtime_ns for path in finished] == stamps
    assert json.loads(finished[0].read_text())["rows"][0]["image"] in ("scan_3.png", "scan_4.png")


# -- class folders matched to the model's labels ----------------------------------------------------


def class_folders(root: Path, names: list[str], digits: list[int]) -> Path:
    """An image folder with one class folder per name, holding the sample of the digit at the same position."""
    for name, digit in zip(names, digits):
        (root / name).mkdir(parents=True)
        shutil.copy(DIGITS[digit], root / name / DIGITS[digit].name)
    return root


def test_class_folders_named_like_the_models_labels_are_matched_by_name(tmp_path):
    """Folders 2..7 of a 10-digit model: folder index 0 is label "2", not label 0."""
    data = class_folders(tmp_path / "digits", [str(d) for d in range(2, 8)], list(range(2, 8)))
    output = tmp_path / "out"
    code = main(["evaluate", *QUICK, "--dataset", str(data), "--per-class", "1", "--output-dir", str(output)])
    assert code == 0
    rows = rows_of(output)
    assert sorted(row["label"] for row in rows) == list(range(2, 8))
    assert all(row["label"] == int(row["image"].split("/")[0]) == row["predicted"] for row in rows)
    config = json.loads((output / "config.json").read_text())
    assert config["label_names"] == [str(d) for d in range(10)]  # the rows' labels are the model's


def test_names_match_case_insensitively_and_as_the_number(tmp_path):
    from moxi_hf.evaluation.data import match_labels

    model = ["zero", "one", "two", "three"]
    assert match_labels(["Two", "ONE"], model) == {0: 2, 1: 1}
    assert match_labels(["3", "0"], model) == {0: 3, 1: 0}
    assert match_labels(["two", "zero", "one", "three"], model) == {0: 2, 1: 0, 2: 1, 3: 3}
    assert match_labels(["a", "b", "c", "d"], model) is None  # same count, no names: by position
    assert match_labels(["zero", "one", "two", "three"], model) == {0: 0, 1: 1, 2: 2, 3: 3}
    expected = r"2 classes \(a, b\) match the model's 4 labels \(zero, one, two, three\) neither by name nor by count"
    with pytest.raises(MoXIError, match=expected):
        match_labels(["a", "b"], model)
    with pytest.raises(MoXIError, match="neither by name nor by count"):
        match_labels(["one", "One"], model)  # two classes on one label: not a match by name


def test_unmatched_class_folders_are_refused_before_running(tmp_path, capsys):
    data = class_folders(tmp_path / "pets", ["bird", "cat", "dog"], [2, 3, 4])
    output = tmp_path / "out"
    code = main(["evaluate", *QUICK, "--dataset", str(data), "--per-class", "1", "--output-dir", str(output)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "the dataset's 3 classes (bird, cat, dog) match the model's 10 labels (0, 1, 2" in err
    assert "neither by name nor by count" in err
    assert not (output / ".partial" / "selection.json").exists()


def test_same_count_different_names_are_matched_by_position_with_a_note(tmp_path, capsys):
    names = [f"class_{letter}" for letter in "abcdefghij"]
    data = class_folders(tmp_path / "letters", names[:1], [3])
    for name in names[1:]:
        (data / name).mkdir()
        shutil.copy(DIGITS[7], data / name / "x.png")
    output = tmp_path / "out"
    assert main(["evaluate", *QUICK[:-1], "--dataset", str(data), "--num-images", "1",
                 "--output-dir", str(output)]) == 0
    assert "matching them by position" in capsys.readouterr().err
    [row] = rows_of(output)  # only class_h (label 7 by position) holds its own digit
    assert (row["label"], row["image"]) == (7, "class_h/x.png")


def test_a_decompression_bomb_in_a_dataset_is_named(tmp_path, capsys):
    from test_image_files import png_header_only

    data = class_folders(tmp_path / "digits", ["3", "4"], [3, 4])
    png_header_only(data / "3" / "bomb.png", 30000, 30000)
    code = main(["evaluate", *QUICK, "--dataset", str(data), "--num-images", "3", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "cannot read image '3/bomb.png'" in err and "decompression bomb" in err
