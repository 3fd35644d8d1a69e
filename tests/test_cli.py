"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def hwnas(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hwnas.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_space_json_reports_size_and_extremes():
    run = hwnas("space", "alphanet", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["size"] == 110075314176  # per stage, as the authors sample (tests/test_space.py)
    rows = {(r["subnet"], r["task"]): r for r in summary["extremes"]}
    assert rows["min", "saliency"]["params"] == 6237858  # the authors' 6348322 less their unused shortcut convs
    assert rows["max", "saliency"]["flops"] == 7609711104


@pytest.mark.slow
def test_arch_writes_json_that_loads_back(tmp_path):
    out = tmp_path / "sub" / "arch.json"
    run = hwnas("arch", "random", "--space", "mini", "--seed", "4", "--out", str(out))
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["space"] == "mini"
    check = hwnas("arch", str(out), "--space", "mini")
    assert check.returncode == 0
    assert check.stdout.splitlines()[0] == run.stdout.splitlines()[0]  # same arch line


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (("space", "nope"), "unknown search space 'nope'"),
        (("arch", "min", "--space", "nope"), "unknown search space 'nope'"),
        (("arch", "biggest", "--space", "mini"), "unknown arch 'biggest'"),
        (("arch", "min", "--space", "mini", "--task", "panoptic"), "unknown task 'panoptic'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    run = hwnas(*args)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.slow
def test_foreign_arch_file_is_refused_and_nothing_written(tmp_path):
    arch = tmp_path / "a.json"
    assert hwnas("arch", "max", "--space", "alphanet", "--out", str(arch)).returncode == 0
    out = tmp_path / "copy.json"
    run = hwnas("arch", str(arch), "--space", "mini", "--out", str(out))
    assert run.returncode == 2 and "arch is for space 'alphanet', not 'mini'" in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [arch]
