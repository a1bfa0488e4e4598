"""The CPU thread policy of the command line and the demo: what is set, and that it is set before torch loads."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moxi_hf.cli import build_parser
from moxi_hf.errors import MoXIError
from moxi_hf.threads import apply_thread_policy, thread_settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = min((REPO / "models" / "moxi-vit-mnist" / "samples").glob("*.png"))


def test_threads_wait_passively_unless_the_environment_chooses():
    assert thread_settings(None, {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_settings(None, {"OMP_WAIT_POLICY": "ACTIVE"}) == {}  # the user's choice stays
    assert thread_settings(None, {"GOMP_SPINCOUNT": "10000"}) == {}
    assert thread_settings(None, {"OMP_NUM_THREADS": "1"}) == {"OMP_WAIT_POLICY": "PASSIVE"}  # count kept as set


def test_a_thread_count_from_the_flag_or_the_environment():
    counts = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    assert thread_settings(3, {}) == {"OMP_WAIT_POLICY": "PASSIVE", **counts}
    assert thread_settings(None, {"MOXI_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}) == counts
    assert thread_settings(2, {"MOXI_THREADS": "3"})["OMP_NUM_THREADS"] == "2"  # the flag wins
    with pytest.raises(MoXIError, match=r"\$MOXI_THREADS must be a positive number of threads, got 'many'"):
        thread_settings(None, {"MOXI_THREADS": "many"})


def test_apply_sets_the_environment():
    environ: dict[str, str] = {}
    assert apply_thread_policy(None, environ) == environ == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("command", ["explain", "compare", "evaluate", "push", "demo"])
def test_threads_is_accepted_before_and_after_every_command(command):
    parser = build_parser()
    extra = ["DIR", "--repo-id", "a/b"] if command == "push" else []
    assert parser.parse_args(["--threads", "2", command, *extra]).threads == 2
    assert parser.parse_args([command, *extra, "--threads", "2"]).sub_threads == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "0", command, *extra])


def _run(code: str, *args: str, **env: str) -> list[str]:
    clean = {key: value for key, value in os.environ.items()
             if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MOXI_THREADS")}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                            env={**clean, "PYTHONPATH": str(REPO), **env}, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


SET_BY_MAIN = """
import os, sys
from moxi_hf.cli import main
assert main(sys.argv[1:]) == 0
import torch
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())
"""


@pytest.mark.slow
def test_the_command_line_sets_the_policy_before_torch_loads(tmp_path):
    common = ["explain", "--quiet", "--method", "self-shapley", "--image", str(SAMPLE)]
    [torch_default] = _run("import torch; print(torch.get_num_threads())")
    assert _run(SET_BY_MAIN, *common, "--output-dir", str(tmp_path / "a")) == ["PASSIVE", "None", torch_default]
    assert _run(SET_BY_MAIN, "--threads", "1", *common, "--output-dir", str(tmp_path / "b")) == ["PASSIVE", "1", "1"]
    assert _run(SET_BY_MAIN, *common, "--output-dir", str(tmp_path / "c"), OMP_WAIT_POLICY="ACTIVE",
                MOXI_THREADS="1") == ["ACTIVE", "1", "1"]


def test_the_space_entry_point_applies_the_policy_before_importing_the_demo():
    tree = ast.parse((REPO / "app.py").read_text())
    lines = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "apply_thread_policy":
            lines["policy"] = node.lineno
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("moxi_hf.demo"):
            lines["demo"] = node.lineno
    assert lines["policy"] < lines["demo"]
