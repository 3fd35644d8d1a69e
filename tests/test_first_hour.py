"""A newcomer's first hour (issue 33): README's quick start runs as written, the budget a search
promises is held against the exported file, a mistyped flag answers before torch is loaded, a
missing extra is named, and the smaller things a first user trips over."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hwnas.hardware.table import Calibration, LatencyTable
from hwnas.space import SearchSpace
from tests.cli import HWNAS, one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
SETUP_LINE = "make setup && . .venv/bin/activate"  # what `make test` has just done before the suite


def quick_start() -> list[str]:
    """The lines of README's first fenced block, comments stripped."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None, "README.md has no ```sh block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(tmp_path):
    """Each `hwnas` line of README's quick start, exactly as written, in a fresh folder; the only
    other line is the setup `make test` runs before the suite."""
    lines = quick_start()
    assert lines[0] == SETUP_LINE and all(line.startswith("hwnas ") for line in lines[1:]), lines
    outputs = [run_cli(*shlex.split(line)[1:], cwd=tmp_path) for line in lines[1:]]
    for made in ("lut/cpu-mini.parquet", "runs/mini-saliency/supernet.pt", "runs/mini-search-cpu/best.json",
                 "export/mini-best.onnx", "export/mini-best.tflite"):  # fmt: skip
        assert (tmp_path / made).is_file(), made
    profiled, exported = outputs[0], outputs[-1]
    assert "checked at 32x32 on whole subnets" in profiled.stdout
    assert "budget it was searched under" in exported.stdout + exported.stderr


def _wrong_table(source: Path, to: Path, slope: float) -> Path:
    """A copy of `source` whose predictions are `slope` x its block sums, never checked: a table that lies."""
    table = LatencyTable.load(source, SearchSpace.load("mini"))
    table.set_calibration((32, 32), Calibration(slope, 0.0, 4))
    table.meta.pop("validation", None)
    return table.save(to)


@pytest.mark.slow
def test_a_broken_budget_is_said_with_its_margin_and_why(mini_run, tmp_path):
    """A table that predicts a twentieth of its block sums: the search warns that the table was never
    checked, best.json keeps the budget, and export measures the file, says it breaks the budget,
    by how much and what the table predicted; its manifest records the verdict."""
    from hwnas.search import run

    lying = _wrong_table(mini_run["lut"], tmp_path / "lying.parquet", slope=0.05)
    mini = SearchSpace.load("mini")
    table = LatencyTable.load(lying, mini)
    largest = table.predict(dataclasses.replace(mini.max(), resolution=(32, 32)))
    budget = f"{largest * 1.01:.6f}ms"  # the largest subnet fits, by the lying table
    result = run(device="cpu", budgets=[budget], space="mini", supernet=mini_run["ckpt"], lut=lying,
                 algorithm="random", evaluations=4, out=tmp_path / "search")  # fmt: skip
    assert any("never checked against whole subnets" in w for w in result.warnings)
    best = json.loads((tmp_path / "search" / "best.json").read_text())
    assert best["search"]["latency_budget_ms"] == {"cpu": pytest.approx(float(budget.removesuffix("ms")))}
    assert best["search"]["table_checked"] is False
    proc = run_cli("export", "--supernet", str(mini_run["ckpt"]), "--arch", str(tmp_path / "search" / "best.json"),
                   "--format", "onnx", "--lut", str(lying), "--out", str(tmp_path / "export"))  # fmt: skip
    said = proc.stderr.replace("\n", " ")
    assert "BREAKS the" in said and "budget it was searched under, by" in said and "the table (" in said, said
    manifest = json.loads(next((tmp_path / "export").glob("*.onnx.json")).read_text())
    speed = manifest["verification"]["speed"]
    assert speed["within_budget"] is False and speed["measured_ms"] > speed["budget_ms"]


@pytest.mark.slow
def test_a_kept_budget_is_said_with_its_margin(mini_run, tmp_path):
    from hwnas.search import run

    run(device="cpu", budgets=["1000ms"], space="mini", supernet=mini_run["ckpt"], lut=mini_run["lut"],
        algorithm="random", evaluations=4, out=tmp_path / "search")  # fmt: skip
    proc = run_cli("export", "--supernet", str(mini_run["ckpt"]), "--arch", str(tmp_path / "search" / "best.json"),
                   "--format", "onnx", "--lut", str(mini_run["lut"]), "--out", str(tmp_path / "export"))  # fmt: skip
    assert "keeps the 1000.000 ms budget it was searched under" in proc.stdout
    assert "to spare" in proc.stdout


BAD_FLAGS = [
    ("search", "--device", "cpu", "--space", "mini", "--budget", "30xs", "--proxy", "flops"),
    ("profile", "--device", "cpu", "--space", "mini", "--resolution", "33x9"),
    ("export", "--supernet", "x.pt", "--arch", "max", "--format", "onnx,tflit"),
    ("train", "supernet", "--space", "minii"),
    ("search", "--device", "cpux", "--space", "mini", "--budget", "30ms", "--proxy", "flops"),
]

_PROBE = """
import sys, time
start = time.perf_counter()
from hwnas.cli import main
sys.argv = ["hwnas", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(code, "torch" in sys.modules, time.perf_counter() - start)
"""


def _probe(*args: str) -> tuple[int, bool, float]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=ROOT)
    code, torch_loaded, seconds = proc.stdout.split()[-3:]
    return int(code), torch_loaded == "True", float(seconds)


@pytest.mark.parametrize("args", BAD_FLAGS, ids=lambda a: f"{a[0]}-{a[-1]}")
def test_a_bad_flag_answers_before_torch_loads(args):
    """The flag is checked with the library's own light checks before the verb imports torch."""
    code, torch_loaded, _ = _probe(*args)
    assert code == 2 and not torch_loaded


@pytest.mark.slow
def test_a_bad_flag_answers_in_a_fraction_of_a_start():
    """Timed as ratios in one run: `--help` (no torch) against a mistyped budget and against a start
    that loads torch (the same search with a good budget, refused later for its missing table)."""
    help_s = min(_probe("--help")[2] for _ in range(2))
    bad_s = min(_probe(*BAD_FLAGS[0])[2] for _ in range(2))
    start_s = min(_probe("search", "--device", "cpu", "--space", "mini", "--budget", "30ms", "--proxy", "flops",
                         "--lut", "/nonexistent.parquet")[2] for _ in range(2))  # fmt: skip
    assert bad_s < 3 * help_s and bad_s < 0.5 * start_s, (help_s, bad_s, start_s)


@pytest.mark.slow
def test_search_without_pymoo_names_the_extra(tmp_path):
    """pymoo hidden as if `pip install hwnas` had no [search] extra: one line naming the extra."""
    code = (
        "import sys; sys.modules['pymoo'] = None; sys.argv = ['hwnas', *sys.argv[1:]]\n"
        "from hwnas.cli import main; main()"
    )
    args = ["search", "--device", "cpu", "--space", "mini", "--budget", "300MFLOPs", "--proxy", "flops",
            "--evals", "4", "--out", str(tmp_path / "s")]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert one_error_line(proc) == "error: this needs pymoo, which is not installed: pip install 'hwnas[search]'"
    assert not (tmp_path / "s").exists()


def test_every_extra_module_is_in_pyproject():
    """Each module the error names an extra for belongs to that extra in pyproject.toml."""
    from hwnas.errors import EXTRA_OF_MODULE

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in set(EXTRA_OF_MODULE.values()):
        assert extra in extras, extra


@pytest.mark.slow
def test_a_missing_arch_file_is_said_as_missing(mini_run, tmp_path):
    proc = run_cli("export", "--supernet", str(mini_run["ckpt"]), "--arch", str(tmp_path / "best.json"),
                   "--out", str(tmp_path / "e"), check=False)  # fmt: skip
    line = one_error_line(proc)
    assert "does not exist" in line and "does not fit" not in line


@pytest.mark.slow
def test_a_missing_table_of_a_device_absent_here_points_at_the_agent(tmp_path):
    proc = run_cli("search", "--device", "m2", "--space", "mini", "--budget", "30ms", "--proxy", "flops",
                   cwd=tmp_path, check=False)  # fmt: skip
    line = one_error_line(proc)
    assert "hwnas agent" in line and "--remote" in line and "m2 does not run here" in line


@pytest.mark.slow
def test_unknown_space_lists_nb201():
    proc = run_cli("search", "--device", "cpu", "--space", "nosuch", "--budget", "30ms", check=False)
    assert "nb201" in one_error_line(proc)


def test_pyproject_says_who_and_what():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["authors"] and project["classifiers"] and project["keywords"]


def test_hwnas_script_is_main():
    """The installed `hwnas` script goes through `main`, where a missing extra is answered."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hwnas"] == "hwnas.cli:main"


def test_quick_start_is_the_first_block_and_short():
    lines = quick_start()
    assert 3 <= len(lines) <= 8 and lines[0] == SETUP_LINE


def _at_80(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([*HWNAS, *args], capture_output=True, text=True, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def test_devices_at_80_columns(tmp_path):
    """One row per device within 80 columns; why a device does not run here is a line of its own."""
    shown = _at_80("devices", cwd=tmp_path).stdout
    rows = _table_lines(shown)
    assert rows and all(len(line) <= 80 for line in rows)
    assert len([r for r in rows if r.startswith("│")]) == len(list(Path(ROOT / "hwnas/hardware/specs").glob("*.toml")))
    assert "m2: it targets arm64" in shown or "m2:" not in shown  # on an arm64 Mac m2 runs here


@pytest.mark.slow
def test_a_search_front_at_80_columns(tmp_path):
    """NAS-Bench-201's cell strings (90 characters) leave the table: numbered lines below it, whole."""
    shown = _at_80("search", "--space", "nb201", "--device", "pixel3", "--budget", "30ms", "--algo", "random",
                   "--evals", "12", "--out", str(tmp_path / "s"), cwd=tmp_path).stdout  # fmt: skip
    rows = _table_lines(shown)
    assert rows and all(len(line) <= 80 for line in rows)
    cells = re.findall(r"^\s+\d+\s+(\|\S+\|)$", shown, re.M)
    assert cells and all(cell.count("|") == 9 for cell in cells)  # every cell string whole on its line


@pytest.mark.slow
def test_a_proxy_front_shows_flops_in_their_unit(mini_run, tmp_path):
    shown = _at_80("search", "--space", "mini", "--device", "cpu", "--budget", "30ms", "--proxy", "flops",
                   "--lut", str(mini_run["lut"]), "--algo", "random", "--evals", "6", "--out", str(tmp_path / "s"),
                   cwd=tmp_path).stdout  # fmt: skip
    chosen = next(line for line in shown.splitlines() if line.startswith("chosen:"))
    assert re.search(r"\(PROXY, not accuracy\) \d+\.\d{3} GFLOPs", chosen) and "0000" not in chosen, chosen


def test_the_progress_bar_at_80_columns():
    """Counts and the time left keep their width at 80 columns; a long block name is cut instead."""
    from rich.console import Console

    from hwnas.cli.common import LazyProgress

    console = Console(width=80, record=True, force_terminal=False)
    with LazyProgress(console=console) as bar:
        job = bar.add_task("profiling cpu/alphanet-imagenet", total=1700, label="")
        bar.update(job, completed=123, label="round 1/4 mbconv_k5_e4_w24_w24_s1_r32x32_act-relu_se0")
        console.print(bar.renderable())
    line = console.export_text().splitlines()[0]
    assert len(line) <= 80 and "123/1700" in line and "-:--:--" in line and "…" in line, line


@pytest.mark.slow
def test_profile_help_states_the_library_default_rounds():
    from hwnas.hardware.precision import DEFAULT_MAX_ROUNDS, DEFAULT_MIN_ROUNDS, DEFAULT_TARGET

    shown = " ".join(run_cli("profile", "--help").stdout.split())
    assert f"default: at least {DEFAULT_MIN_ROUNDS}," in shown and f"(default: {DEFAULT_MAX_ROUNDS})" in shown
    assert f"[default: {DEFAULT_TARGET * 100:.1f}]" in shown  # --precise-to, in percent
