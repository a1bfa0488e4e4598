"""Model sources (local folder vs Hub id, no network, damaged weights) and bad Python API inputs."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from moxi_hf import Explainer, MoXIError, sources
from moxi_hf.sources import (
    looks_like_path,
    resolve_dataset_source,
    resolve_model_source,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def online(monkeypatch):
    """The Hub client as if online, whatever HF_HUB_OFFLINE the test run has."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return constants


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- path or Hub id -----------------------------------------------------------------------------


def test_what_reads_as_a_path(monkeypatch):
    monkeypatch.chdir(ROOT)
    for name in ("./x", "../x", "/x", "~/x", "~", ".", "models/typo", "a/b/c", "owner/name/"):
        assert looks_like_path(name), name
    for name in ("google/vit-base-patch16-224", "gpt2", "no-such-owner/models"):
        assert not looks_like_path(name), name


@pytest.mark.parametrize("name", ["models/typo", "./no-such-model", "~/no-such-moxi-model", "/no/such/model",
                                  "a/b/c"])
def test_a_mistyped_folder_is_refused_at_once(name, monkeypatch, online):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")  # never asked
    start = time.perf_counter()
    with pytest.raises(MoXIError, match=f"^no such folder: '{name}' \\(the model path does not exist"):
        Explainer.from_pretrained(name)
    assert time.perf_counter() - start < 2


def test_a_near_miss_gets_a_suggestion(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(MoXIError, match=r"did you mean 'models/moxi-vit-mnist'\?"):
        resolve_model_source("models/moxi-vit-mnst")


def test_files_and_invalid_names(tmp_path, monkeypatch):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(MoXIError, match="is a file, not a model folder"):
        resolve_model_source(tmp_path / "weights.bin")
    with pytest.raises(MoXIError, match="no config.json"):
        resolve_model_source(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MoXIError, match="not a Hub id either"):
        resolve_model_source("my model")
    with pytest.raises(MoXIError, match="^no such folder: 'weights.bin/x'"):
        resolve_dataset_source("weights.bin/x")


def test_local_folders_are_returned_as_given(vit_dir, monkeypatch, tmp_path):
    assert resolve_model_source(vit_dir) == vit_dir
    assert resolve_dataset_source(str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("HOME", str(Path(vit_dir).parent))
    assert resolve_model_source(f"~/{Path(vit_dir).name}") == vit_dir


# -- Hub ids without network --------------------------------------------------------------------


def test_a_hub_id_without_network_fails_fast(monkeypatch, online, tmp_path):
    # HF_ENDPOINT pointing at a closed port: what the Hub client sees when there is no network.
    monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(online, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(MoXIError) as raised:
        Explainer.from_pretrained("google/vit-base-patch16-224")
    assert time.perf_counter() - start < 10
    message = str(raised.value)
    assert message.startswith(f"could not reach the Hugging Face Hub at {online.ENDPOINT} (")
    assert "the model 'google/vit-base-patch16-224'" in message
    assert "set HF_HUB_OFFLINE=1 to use models already in your Hub cache" in message


def test_a_cached_hub_model_without_network_points_to_offline_mode(monkeypatch, online, tmp_path):
    snapshot = tmp_path / "models--owner--model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--owner--model" / "refs").mkdir()
    (tmp_path / "models--owner--model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(online, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(MoXIError, match="it is in your Hub cache: set HF_HUB_OFFLINE=1 to use that copy"):
        resolve_model_source("owner/model")


def test_a_silent_hub_times_out(monkeypatch, online):
    monkeypatch.setattr(sources, "HUB_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.perf_counter()
        with pytest.raises(MoXIError, match=r"no answer within 0\.5 s.*HF_HUB_OFFLINE=1"):
            resolve_dataset_source("owner/some-dataset")
        assert time.perf_counter() - start < 5


def test_any_hub_answer_counts_as_reachable(monkeypatch, online, tmp_path):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert resolve_model_source("owner/model") == "owner/model"  # 404 here; loading reports it
    finally:
        server.shutdown()
        server.server_close()


def test_offline_mode_skips_the_probe(monkeypatch, online):
    monkeypatch.setattr(online, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert resolve_model_source("owner/model") == "owner/model"
    monkeypatch.setattr(online, "HF_HUB_OFFLINE", False)
    assert resolve_model_source("owner/model", local_files_only=True) == "owner/model"


# -- damaged weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_a_truncated_checkpoint_names_the_file_and_the_fix(keep, vit_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(vit_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(MoXIError) as raised:
        Explainer.from_pretrained(folder)
    message = str(raised.value)
    assert message.startswith(f"the weights file {str(weights)!r} is damaged or incomplete (")
    assert message.endswith("download it again, or re-save the model with save_pretrained")


# -- the Python API's bad inputs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def explainer(vit_dir):
    return Explainer.from_pretrained(vit_dir)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((0, 0)), r"^the image array is empty \(shape \(0, 0\)\)$"),
    (np.zeros((0, 5, 3), np.uint8), r"^the image array is empty \(shape \(0, 5, 3\)\)$"),
    (torch.zeros(3, 16, 16, dtype=torch.uint8), (r"^a torch.uint8 tensor is not processed pixel_values "
                                                r"\(float, shape \(B, 3, H, W\)\); pass the picture as a PIL image")),
    (torch.zeros(1, 3, 16, 16, dtype=torch.int64), r"^a torch.int64 tensor is not processed pixel_values"),
    (torch.zeros(16, 16), (r"^pixel_values must have shape \(B, 3, H, W\) \(or \(C, H, W\) for one image\), "
                          r"got \(16, 16\)$")),
    (torch.zeros(0, 3, 16, 16), r"^pixel_values is empty: shape \(0, 3, 16, 16\), expected \(B, 3, H, W\)"),
    (torch.zeros(1, 1, 16, 16), r"^pixel_values must have shape \(B, 3, H, W\): the model takes 3 channels"),
    (torch.full((1, 3, 16, 16), float("nan")), r"^pixel_values hold NaN or infinite values$"),
])
def test_bad_api_inputs_are_clear_errors(bad, message, explainer):
    with pytest.raises(MoXIError, match=message):
        explainer.explain(bad, method="self-shapley")


def test_an_empty_batch_tensor_is_refused_by_explain_batch(explainer):
    with pytest.raises(MoXIError, match=r"^pixel_values is empty: shape \(0, 3, 16, 16\)"):
        explainer.explain_batch(torch.zeros(0, 3, 16, 16), method="self-shapley")
    with pytest.raises(MoXIError, match=r"got \(3, 16, 16\)$"):
        explainer.explain_batch(torch.zeros(3, 16, 16), method="self-shapley")
    with pytest.raises(MoXIError, match=r"^a tensor in a list of images: pass processed pixel_values as one"):
        explainer.explain_batch([torch.zeros(3, 16, 16)], method="self-shapley")


def test_good_float_pixel_values_still_work(explainer, pixel_values):
    explanation = explainer.explain(pixel_values[0], method="self-shapley")
    assert sorted(explanation.order) == list(range(16))
