"""The CLI as users meet it: from any folder, a user's specs over the packaged ones, Ctrl-C that says
how to resume, outputs checked before work, `--version`, and `hwnas.search.run` from Python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

import hwnas.search
from hwnas.hardware.device import load_device, packaged_dir
from hwnas.space import SearchSpace
from tests.cli import HWNAS, one_error_line, run_cli
from tests.test_agent import free_port
from tests.test_lut import synthetic_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """hwnas as a plain `pip install` leaves it: a wheel built from a copy of the sources, installed
    (without its dependencies, which come from this environment) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(ROOT / "hwnas", source / "hwnas", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), str(source)], check=True)
    wheel = next(root.glob("hwnas-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("hwnas/hardware/specs/cpu.toml", "hwnas/space/presets/mini.toml", "hwnas/space/tables/nb201.parquet"):
        assert data in names, data
    subprocess.run([*pip, "install", "--no-deps", "--target", str(root / "site"), str(wheel)], check=True)
    return {**os.environ, "PYTHONPATH": str(root / "site"), "COLUMNS": "200"}


@pytest.mark.slow
def test_cli_works_from_a_folder_outside_the_checkout(tmp_path, installed):
    """Device specs ship in the package: devices, profile and the agent work from any folder."""
    where = subprocess.run([sys.executable, "-c", "import hwnas; print(hwnas.__file__)"], env=installed,
                           cwd=tmp_path, capture_output=True, text=True).stdout  # fmt: skip
    assert where.startswith(installed["PYTHONPATH"]) and str(ROOT) not in where  # the installed copy

    def run_cli(*args, cwd):
        proc = subprocess.run([*HWNAS, *args], cwd=cwd, env=installed, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    listed = run_cli("devices", cwd=tmp_path).stdout
    assert all(name in listed for name in ("cpu", "cpu-tflite", "m2", "rtx4090", "snapdragon8"))
    done = run_cli("profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--rounds", "1",
                   cwd=tmp_path)  # fmt: skip
    every = len(SearchSpace.load("mini").all_block_signatures([(32, 32)]))
    assert f"{every} block signatures on cpu" in done.stdout and (tmp_path / "lut" / "cpu-mini.parquet").is_file()
    again = run_cli("profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--rounds", "1",
                    cwd=tmp_path)  # fmt: skip
    assert "nothing measured" in again.stdout and "wrote" not in again.stdout
    port = free_port()
    env = {**installed, "HWNAS_AGENT_TOKEN": "t" * 32}
    agent = subprocess.Popen([*HWNAS, "agent", "--port", str(port)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        info, deadline = None, time.monotonic() + 60
        while info is None and time.monotonic() < deadline and agent.poll() is None:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/v1/info", headers={"Authorization": "Bearer " + "t" * 32})
                info = reply.json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert info is not None, agent.stdout.read() if agent.poll() is not None else "agent did not answer"
        assert "cpu" in json.dumps(info)
    finally:
        agent.terminate()
        agent.wait(timeout=30)


@pytest.mark.slow
def test_a_user_devices_folder_overrides_a_packaged_spec(tmp_path):
    packaged = (packaged_dir() / "cpu.toml").read_text()
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "cpu.toml").write_text(packaged.replace("threads = 2", "threads = 1"))
    (tmp_path / "devices" / "lab-board.toml").write_text(packaged.replace('name = "cpu"', 'name = "lab-board"'))
    assert load_device("cpu").threads == 2  # from the checkout's root: no ./devices, the packaged spec
    assert load_device("cpu", tmp_path / "devices").threads == 1
    listed = run_cli("devices", cwd=tmp_path).stdout
    assert "threads=1" in listed.split("cpu-tflite")[0] and "lab-board" in listed and "m2" in listed
    assert "from your folder: cpu, lab-board" in listed


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "t.parquet"
    cmd = [*HWNAS, "profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--out", str(out)]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT then prints every thread's stack
    # A user's Ctrl-C reaches a command run from a terminal, where SIGINT is not ignored. A test run
    # started in the background (`make test &`, nohup, some CI runners) ignores SIGINT, and a child
    # inherits that (Python then installs no KeyboardInterrupt handler): that was the "flaky" hang.
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    masks = _signal_masks(proc.pid), _signal_masks(os.getpid())  # SIGINT is bit 1 of each mask
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # say why: the masks show an ignored (SigIgn bit 1) or blocked SIGINT
        proc.send_signal(signal.SIGABRT)
        _, stderr = proc.communicate(timeout=30)
        stacks = stderr[stderr.find("Fatal Python error") :][:4000]
        pytest.fail(f"profile still ran 60 s after Ctrl-C; signal masks (child, pytest) {masks}; its output:\n"
                    f"{stderr[:3000]}\n...\n{stacks}")  # fmt: skip
    assert proc.returncode == 130, stderr
    assert "interrupted; run the same command again to resume the table" in stderr and "Traceback" not in stderr


def _signal_masks(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines() if Path(f"/proc/{pid}/status").exists() else []
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines) if k in ("SigBlk", "SigIgn", "SigCgt")}


@pytest.mark.slow
def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    a_file = tmp_path / "A_FILE"
    a_file.write_text("not a folder")
    started = time.monotonic()
    line = one_error_line(run_cli("train", "supernet", "--space", "mini", "--out", str(a_file / "s.pt"), check=False))
    assert "checkpoint" in line and "is not writable" in line and "is a file" in line
    table = tmp_path / "cpu-mini.parquet"
    t = synthetic_table(SearchSpace.load("mini"), resolutions=[(32, 32)])
    t.meta["device"]["name"] = "cpu"
    t.save(table)
    base = ["search", "--device", "cpu", "--space", "mini", "--lut", str(table), "--proxy", "flops", "--budget", "9ms"]
    line = one_error_line(run_cli(*base, "--out", str(a_file / "run"), check=False))
    assert "search archive" in line and "is not writable" in line
    report = ["report", "--device", "cpu", "--space", "mini", "--arch", "min", "--json", str(a_file / "r.json")]
    assert "is not writable" in one_error_line(run_cli(*report, check=False))
    assert time.monotonic() - started < 60  # refused at once: no epoch, no search, no measurement ran
    assert a_file.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == [
        "A_FILE", "cpu-mini.json", "cpu-mini.parquet",
    ]  # fmt: skip


@pytest.mark.slow
def test_version_and_fast_help():
    assert run_cli("--version").stdout.strip() == "hwnas 0.1.0"
    probe = "import sys, hwnas.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    shown = run_cli("profile", "--help").stdout.splitlines()  # typer's own --help line keeps its <bool>
    assert not [line for line in shown if "<bool>" in line and "Show this message" not in line]
    assert any("WxH" in line for line in shown) and not any("list[str]" in line for line in shown)


@pytest.mark.slow
def test_search_run_from_python(tmp_path):
    mini = SearchSpace.load("mini")
    table = synthetic_table(mini, resolutions=[(32, 32)])
    table.meta["device"]["name"] = "cpu"
    table.save(tmp_path / "cpu-mini.parquet")
    low, high = table.predict(mini.min()), table.predict(replace(mini.max(), resolution=(32, 32)))
    result = hwnas.search.run(
        device="cpu", budgets=[f"{(low + high) / 2:.5f}ms"], space="mini", proxy="flops",
        lut=tmp_path / "cpu-mini.parquet", algorithm="random", evaluations=12, out=tmp_path / "run",
    )  # fmt: skip
    assert isinstance(result, hwnas.search.SearchResult) and len(result.archive) == 12
    assert result.chosen.values["latency"] <= (low + high) / 2 and all(p.is_file() for p in result.files)
    assert mini.load_arch(tmp_path / "run" / "best.json") == result.chosen.arch
    assert result.archive.meta["hypervolume_normalised"] > 0
    seen = []
    again = hwnas.search.run(
        device="cpu", budgets=[f"{(low + high) / 2:.5f}ms"], space="mini", proxy="flops",
        lut=tmp_path / "cpu-mini.parquet", algorithm="random", evaluations=12, out=tmp_path / "run",
        on_resume=lambda path, n: seen.append(n),
    )  # fmt: skip
    assert seen == [12] and again.resumed == 12 and len(again.archive) == 12


@pytest.mark.parametrize("pick", ["random", "min"])
def test_export_takes_the_arch_words_arch_and_report_take(tmp_path, pick):
    from hwnas.nn.checkpoint import Checkpoint
    from hwnas.train.source import arch_label, resolve_arch

    mini = SearchSpace.load("mini")
    ckpt = Checkpoint(tmp_path, {"kind": "supernet"}, mini)
    assert resolve_arch(ckpt, pick) == mini.pick(pick)
    assert arch_label(pick) == pick


@pytest.mark.slow
def test_space_defaults_to_the_checkpoints(mini_run, tmp_path):
    """One --space rule: a verb given a checkpoint reads its space (mini here) unless told otherwise."""
    args = ["--device", "cpu", "--supernet", str(mini_run["ckpt"])]
    run_cli("search", *args, "--lut", str(mini_run["lut"]), "--budget", "1000ms", "--algo", "random", "--evals", "4",
            "--out", str(tmp_path / "s"))  # fmt: skip
    assert json.loads((tmp_path / "s" / "best.json").read_text())["space"] == "mini"
    shown = run_cli("report", *args, "--arch", "min", "--batch", "1", "--passes", "1", "--rounds", "1").stdout
    assert str(SearchSpace.load("mini").min()) in shown
    assert "ran " in shown and "not --passes 1" in shown  # one pass is shorter than the meter's window


def test_pareto_png_draws_one_panel_per_cost(tmp_path):
    """With latency and params the plot has a panel for each, so the params budget is drawn too."""
    from PIL import Image

    from hwnas.search import Costs, parse_budgets, search
    from hwnas.search.accuracy import ProxyEvaluator
    from hwnas.search.plot import pareto_png

    mini = SearchSpace.load("mini")
    table = synthetic_table(mini)
    costs = Costs(mini, task="saliency", table=table)
    budgets = parse_budgets(["9ms", "5M"])
    archive = search(mini, accuracy=ProxyEvaluator("flops", costs, mini), costs=costs, budgets=budgets,
                     algorithm="random", evaluations=12)  # fmt: skip
    one = pareto_png(archive, budgets=budgets[:1], chosen=archive.pick(budgets), path=tmp_path / "two.png")
    single = search(mini, accuracy=ProxyEvaluator("flops", costs, mini), costs=costs, budgets=budgets[:1],
                    algorithm="random", evaluations=12)  # fmt: skip
    other = pareto_png(single, budgets=budgets[:1], chosen=single.pick(budgets[:1]), path=tmp_path / "one.png")
    assert [o.name for o in archive.objectives] == ["accuracy", "latency", "params"]
    assert Image.open(one).width > 1.6 * Image.open(other).width
