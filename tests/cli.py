"""Running the `hwnas` CLI in a subprocess, as a user does."""

import os
import subprocess
import sys

HWNAS = [sys.executable, "-m", "hwnas.cli"]


def run_cli(*args: str, check: bool = True, timeout: int = 900, cwd=None) -> subprocess.CompletedProcess:
    """Run `hwnas ARGS` (in folder `cwd`); with `check`, fail the test (showing its output) unless it exits 0."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([*HWNAS, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a refused command (exit code 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]
