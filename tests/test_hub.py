"""``push_artifacts`` / ``moxi push`` / ``load_artifacts(repo_id)`` against a fake Hub on 127.0.0.1 (offline)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import huggingface_hub.constants
import pytest
from hub_server import FakeHub
from huggingface_hub import DatasetCard
from huggingface_hub.utils import _detect_agent

from artifact_rows import CONFIG, LABELS, assert_rows_equal, curves_plot, make_rows
from moxi_hf.artifacts import load_artifacts, save_artifacts
from moxi_hf.artifacts.hub import push_artifacts, upload_file_list
from moxi_hf.cli import main
from moxi_hf.errors import MoXIError
from moxi_hf.metrics import aggregate_curves

TOKEN = "hf_FakeWriteToken0123456789abcdefghij"
REPO = "tester/moxi-run"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    # no token from the environment or a login cache on this machine may interfere
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    server = FakeHub(token=TOKEN).start()
    # huggingface_hub fetches an "agent harnesses" registry from huggingface.co once per process
    # (for its user-agent); keep every request of these tests on 127.0.0.1
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    yield server
    server.stop()


@pytest.fixture
def run_dir(tmp_path):
    """A finished evaluation folder, plus what must never be uploaded: resume state and a temporary."""
    rows = make_rows()
    out = tmp_path / "run"
    save_artifacts(out, rows, aggregate_curves(rows), dict(CONFIG), label_names=LABELS, plots={"curves": curves_plot()})
    (out / ".partial").mkdir()
    (out / ".partial" / "shard-0.json").write_text('{"done": [0, 1]}')
    (out / "data" / ".explanations.parquet.tmp").write_bytes(b"half-written")
    return out


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256 and mtime, to prove nothing changed locally."""
    return {p.relative_to(folder).as_posix(): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}"
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_no_token_leaked(hub: FakeHub, folder: Path, *texts: str) -> None:
    authorised = [r for r in hub.requests if r.headers.get("authorization") == f"Bearer {TOKEN}"]
    assert authorised, "the token was never sent"
    for request in hub.requests:
        assert TOKEN.encode() not in request.body, request.path
        assert TOKEN not in request.path
        assert all(TOKEN not in value for key, value in request.headers.items() if key != "authorization")
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for text in texts:
        assert TOKEN not in text


@pytest.mark.parametrize("xet", [True, False], ids=["pipelined-upload", "single-commit"])
def test_push_uploads_the_folder(hub, run_dir, monkeypatch, capfd, caplog, xet):
    # with hf_xet installed upload_folder streams commits; without it, one create_commit: test both
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", not xet)
    before = tree_digest(run_dir)
    caplog.set_level(logging.DEBUG)
    url = push_artifacts(run_dir, REPO, private=True, token=TOKEN, endpoint=hub.url)
    assert url == f"{hub.url}/datasets/{REPO}"
    assert list(hub.repos) == [("dataset", REPO)]
    repo = hub.repo(REPO)
    assert repo.repo_type == "dataset" and repo.private is True
    expected = ["README.md", "config.json", "curves.json", "data/explanations.parquet", "plots/curves.png"]
    assert sorted(repo.files()) == expected == upload_file_list(run_dir)
    for name, content in repo.files().items():
        assert content == (run_dir / name).read_bytes(), name
    assert repo.commit_messages == ["Upload MoXI explanations (run)"]
    assert tree_digest(run_dir) == before
    captured = capfd.readouterr()
    assert_no_token_leaked(hub, run_dir, captured.out, captured.err, caplog.text)


def test_push_public_by_default_and_updates_existing_repo(hub, run_dir):
    push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url, commit_message="first")
    assert hub.repo(REPO).private is False
    (run_dir / "plots" / "extra.png").write_bytes(b"\x89PNG more")
    push_artifacts(run_dir, REPO, private=True, token=TOKEN, endpoint=hub.url, commit_message="second")
    repo = hub.repo(REPO)
    assert repo.private is False  # visibility is only chosen when the repo is created
    assert repo.commit_messages == ["first", "second"]
    assert repo.files()["plots/extra.png"] == b"\x89PNG more"


def test_push_to_a_new_branch(hub, run_dir):
    url = push_artifacts(run_dir, REPO, revision="run-2", token=TOKEN, endpoint=hub.url)
    assert url == f"{hub.url}/datasets/{REPO}/tree/run-2"
    repo = hub.repo(REPO)
    assert repo.files("main") == {} and "README.md" in repo.files("run-2")
    push_artifacts(run_dir, REPO, revision="run-2", token=TOKEN, endpoint=hub.url)  # branch exists: fine
    assert len(repo.commit_messages) == 2


def test_token_from_hf_token_environment(hub, run_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_artifacts(run_dir, REPO, endpoint=hub.url)
    assert "README.md" in hub.repo(REPO).files()
    assert_no_token_leaked(hub, run_dir)


def test_missing_token_is_a_clear_error(hub, run_dir):
    with pytest.raises(MoXIError, match=r"no Hugging Face token.*hf auth login.*HF_TOKEN"):
        push_artifacts(run_dir, REPO, endpoint=hub.url)
    assert hub.requests == []  # said before any request (offline too)


def test_rejected_token_is_a_clear_error(hub, run_dir):
    with pytest.raises(MoXIError, match=r"authentication failed \(HTTP 401\).*hf auth login.*HF_TOKEN"):
        push_artifacts(run_dir, REPO, token="hf_NotTheRightToken000000000000000000", endpoint=hub.url)


def test_cli_push_without_token_or_network(run_dir, monkeypatch, tmp_path, capfd):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    code = main(["push", str(run_dir), "--repo-id", REPO, "--endpoint", "http://127.0.0.1:9", "--quiet"])
    err = capfd.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "no Hugging Face token" in err and "hf auth login" in err and "HF_TOKEN" in err


@pytest.mark.parametrize("failing", [("POST", r"^/api/repos/create$"), ("POST", r"/commit/")],
                         ids=["create-repo", "commit"])
def test_server_error_is_one_clear_line(hub, run_dir, monkeypatch, failing):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the commit is not retried
    hub.fail[failing] = 500
    before = tree_digest(run_dir)
    with pytest.raises(MoXIError) as error:
        push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url)
    message = str(error.value)
    assert "\n" not in message and "HTTP 500" in message and REPO in message and TOKEN not in message
    assert tree_digest(run_dir) == before


def test_bad_input(tmp_path, hub, run_dir):
    with pytest.raises(MoXIError, match="does not exist"):
        push_artifacts(tmp_path / "nope", REPO, token=TOKEN, endpoint=hub.url)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(MoXIError, match="not a moxi artifact folder"):
        push_artifacts(tmp_path / "plain", REPO, token=TOKEN, endpoint=hub.url)
    with pytest.raises(MoXIError, match="invalid repo id"):
        push_artifacts(run_dir, "not a/valid id!", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []  # nothing was sent for bad input


def test_cli_push(hub, run_dir, capfd):
    code = main(["push", str(run_dir), "--repo-id", REPO, "--private", "--commit-message", "from the CLI",
                 "--token", TOKEN, "--endpoint", hub.url])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().splitlines()[-1] == f"{hub.url}/datasets/{REPO}"
    assert "uploading 5 files" in captured.err
    repo = hub.repo(REPO)
    assert repo.private and repo.commit_messages == ["from the CLI"]
    assert_no_token_leaked(hub, run_dir, captured.out, captured.err)


def test_cli_push_errors(hub, run_dir, tmp_path, capfd):
    before = tree_digest(run_dir)
    code = main(["push", str(tmp_path / "missing"), "--repo-id", REPO, "--endpoint", hub.url])
    err = capfd.readouterr().err
    assert code == 1 and err.startswith("moxi: error: ") and "does not exist" in err and err.count("\n") == 1

    (tmp_path / "half").mkdir()
    code = main(["push", str(tmp_path / "half"), "--repo-id", REPO, "--endpoint", hub.url])
    err = capfd.readouterr().err
    assert code == 1 and "not a moxi artifact folder" in err and err.count("\n") == 1

    hub.fail[("POST", r"^/api/repos/create$")] = 500
    code = main(["push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, "--endpoint", hub.url, "--quiet"])
    captured = capfd.readouterr()
    assert code == 1 and "HTTP 500" in captured.err and captured.err.count("\n") == 1 and captured.out == ""
    assert TOKEN not in captured.err
    assert tree_digest(run_dir) == before

    with pytest.raises(SystemExit) as usage:
        main(["push", str(run_dir)])  # --repo-id is required
    assert usage.value.code == 2


def test_load_back_from_the_hub(hub, run_dir, tmp_path):
    push_artifacts(run_dir, REPO, revision="v1", token=TOKEN, endpoint=hub.url)
    artifacts = load_artifacts(REPO, revision="v1", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    local = load_artifacts(run_dir)
    assert_rows_equal(artifacts.rows, [dict(row) for row in local.rows])
    assert artifacts.rows.features == local.rows.features
    assert artifacts.curves == local.curves and artifacts.config == local.config
    assert isinstance(artifacts.card, DatasetCard) and artifacts.card.text == local.card.text
    assert [p.name for p in artifacts.plots] == ["curves.png"]
    assert not (artifacts.path / ".partial").exists()
    with pytest.raises(MoXIError, match="could not download dataset repo tester/unknown"):
        load_artifacts("tester/unknown", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")


def test_artifacts_object_round_trip(hub, run_dir, tmp_path):
    """The HF-style object: load, push_to_hub, from_pretrained from the Hub, save_pretrained."""
    import moxi_hf

    run = moxi_hf.load_artifacts(run_dir)
    url = run.push_to_hub(REPO, token=TOKEN, endpoint=hub.url)
    assert url == f"{hub.url}/datasets/{REPO}" and "README.md" in hub.repo(REPO).files()
    again = moxi_hf.Artifacts.from_pretrained(REPO, token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert again.curves == run.curves and again.config == run.config
    copy = again.save_pretrained(tmp_path / "copy")
    assert moxi_hf.load_artifacts(copy).curves == run.curves
    assert sorted(p.name for p in copy.rglob("*") if p.name.startswith(".")) == []


# -- what moxi push sends: links, the file list, --dry-run, damaged folders, timeouts, tokens ------------


def test_a_link_leading_out_of_the_folder_is_refused_by_name(hub, run_dir, tmp_path, capfd):
    private = tmp_path / "hostname"
    private.write_text("alice-laptop\n")
    (run_dir / "plots" / "host.png").symlink_to(private)
    with pytest.raises(MoXIError, match=r"plots/host\.png -> .*hostname.*outside"):
        push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url)
    code = main(["push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, "--endpoint", hub.url])
    err = capfd.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "plots/host.png" in err
    assert hub.requests == []  # refused before any request


def test_links_inside_the_folder_and_hidden_ones_are_fine(hub, run_dir, tmp_path):
    (run_dir / "plots" / "again.png").symlink_to(run_dir / "plots" / "curves.png")  # stays inside
    (tmp_path / "elsewhere").write_text("x")
    (run_dir / ".partial" / "link").symlink_to(tmp_path / "elsewhere")  # hidden: never uploaded
    push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url)
    files = hub.repo(REPO).files()
    assert files["plots/again.png"] == (run_dir / "plots" / "curves.png").read_bytes()
    assert not any(name.startswith(".partial") for name in files)


def test_push_lists_the_files_it_uploads_and_dry_run_sends_nothing(hub, run_dir, capfd):
    expected = ["README.md", "config.json", "curves.json", "data/explanations.parquet", "plots/curves.png"]
    code = main(["push", str(run_dir), "--repo-id", REPO, "--dry-run", "--endpoint", hub.url])  # no token needed
    captured = capfd.readouterr()
    assert code == 0 and hub.requests == []
    assert [line.split()[0] for line in captured.out.splitlines()] == expected
    assert "nothing was uploaded" in captured.err
    code = main(["push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, "--endpoint", hub.url])
    captured = capfd.readouterr()
    assert code == 0 and sorted(hub.repo(REPO).files()) == expected
    listed = [line.split()[0] for line in captured.err.splitlines() if line.startswith("  ")]
    assert listed == expected


@pytest.mark.parametrize("name, content", [("config.json", b'{"kind": "evaluate", '),
                                           ("data/explanations.parquet", b"garbage")],
                         ids=["truncated-config", "garbage-parquet"])
def test_a_damaged_folder_is_refused_before_any_request(hub, run_dir, capfd, name, content):
    (run_dir / name).write_bytes(content)
    with pytest.raises(MoXIError, match=rf"{name.replace('.', '[.]')} is not"):
        push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url)
    code = main(["push", str(run_dir), "--repo-id", REPO, "--dry-run"])
    err = capfd.readouterr().err
    assert code == 1 and err.count("\n") == 1 and name in err
    assert hub.requests == []


def test_a_hub_that_never_answers_times_out_with_the_retry_command(hub, run_dir, capfd):
    import time

    from moxi_hf.artifacts.hub import HUB_TIMEOUT

    assert 60 <= HUB_TIMEOUT <= 120
    hub.hang.add(("POST", r"^/api/repos/create$"))
    start = time.monotonic()
    code = main(["push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, "--endpoint", hub.url, "--timeout", "1",
                 "--quiet"])
    err = capfd.readouterr().err
    assert code == 1 and time.monotonic() - start < 10
    assert err.count("\n") == 1 and "no answer from the Hub" in err and "within 1 s" in err
    assert f"retry with `moxi push {run_dir} --repo-id {REPO} --endpoint {hub.url}`" in err
    with pytest.raises(MoXIError, match="within 0.5 s"):  # the Python call takes the same bound
        push_artifacts(run_dir, REPO, token=TOKEN, endpoint=hub.url, timeout=0.5)


@pytest.mark.parametrize("debug", [False, True], ids=["one-line", "debug-traceback"])
def test_a_token_echoed_by_the_hub_is_never_printed(hub, run_dir, monkeypatch, capfd, debug):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.echo[("POST", r"^/api/repos/create$")] = 400
    code = main([*(["--debug"] if debug else []), "push", str(run_dir), "--repo-id", REPO, "--endpoint", hub.url])
    err = capfd.readouterr().err
    assert code == 1 and "Authorization" in err
    assert ("Traceback" in err) == debug
    assert TOKEN not in err and TOKEN[3:20] not in err


def test_a_token_given_with_token_is_scrubbed_too(hub, run_dir, capfd):
    hub.echo[("POST", r"^/api/repos/create$")] = 400
    code = main(["--debug", "push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, "--endpoint", hub.url])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" in err and TOKEN not in err


def test_the_scrubber_masks_tokens_and_authorization_values():
    from moxi_hf.secrets import scrub_text

    text = ("Authorization: Bearer hf_abcdefghijklmnopqrstuvwxyz0123456789 and 'authorization': 'Basic dXNlcjpwYXNz'"
            " token=hf_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210 my-secret")
    clean = scrub_text(text, secrets=["my-secret"])
    for secret in ("hf_abcdefghij", "dXNlcjpwYXNz", "hf_ZYXWVUT", "my-secret"):
        assert secret not in clean
    assert "Authorization: Bearer ***" in clean
