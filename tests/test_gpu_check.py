"""The GPU check and the GPU training paths, run on this CPU where their logic does not need CUDA:
`bench.gpu_check` in its CI-size form (every step: a cpu-torch table, energy, bf16 DDP training),
its energy step through NVML's code path with a stand-in counter, the process-group and device
choices DDP makes on a GPU host, and bf16 + channels_last training that resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from hwnas.data import load_data
from hwnas.hardware.energy import NvmlMeter
from hwnas.hardware.gpu_check import CI, Skipped, energy_step, run_steps, table_step
from hwnas.nn.checkpoint import load
from hwnas.nn.factory import create
from hwnas.process_group import dist_backend, rank_device
from hwnas.space import SearchSpace
from hwnas.train.task import SaliencyTask
from hwnas.train.trainer import TrainConfig, fit
from tests.cli import one_error_line, run_cli

ROOT = Path(__file__).resolve().parent.parent


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", *args], capture_output=True, text=True, timeout=900, cwd=ROOT
    )


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA: the check would run")
def test_without_cuda_the_check_says_so_in_one_line_and_exits_0(tmp_path):
    proc = gpu_check("--json", str(tmp_path / "g.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]
    assert proc.stdout.startswith("gpu_check: no CUDA device here") and not (tmp_path / "g.json").exists()


@pytest.mark.slow
def test_the_ci_size_form_runs_every_step_and_writes_one_table(tmp_path):
    proc = gpu_check("--cpu", "--json", str(tmp_path / "g.json"))
    written = tmp_path / "g.json"
    failed = [r for r in json.loads(written.read_text())["rows"] if r["status"] == "failed"] if written.exists() else []
    # a failed step's table line names its first error only: its traceback is in the JSON
    assert proc.returncode == 0, proc.stdout + proc.stderr + "".join(r.get("traceback", "") for r in failed)
    report = json.loads((tmp_path / "g.json").read_text())
    rows = {row["step"]: row for row in report["rows"]}
    assert list(rows) == [
        "table mini 32x32", "energy", "train ddp bf16", "search on device", "evaluate on device",
        "train subnet selfkd", "search 2 processes", "tensorrt", "tensorrt int8",
    ]  # fmt: skip
    assert all(row["status"] == "ok" for row in report["rows"][:-2]), report["rows"]
    table = rows["table mini 32x32"]["figures"]
    assert rows["table mini 32x32"]["status"] == "ok" and table["signatures"] > 10 and table["held_out"] == 2
    assert set(table["lines"]) == {"32x32"}
    energy = rows["energy"]["figures"]
    assert energy["source"] == "estimated-spec" and len(energy["blocks_mj"]) == 2 and energy["subnet_mj"] > 0
    train = rows["train ddp bf16"]["figures"]
    assert train["processes"] == 2 and train["replica_checks"] == 2 and train["images_per_s"] > 0
    assert rows["search on device"]["figures"]["evaluated"] == 16
    assert rows["search 2 processes"]["figures"] == {**rows["search 2 processes"]["figures"], "evaluated": 16,
                                                     "same_archive": True}  # fmt: skip
    assert rows["evaluate on device"]["figures"]["images"] == 8 and "cc" in rows["evaluate on device"]["figures"]
    assert rows["train subnet selfkd"]["figures"]["images_per_s"] > 0
    assert rows["tensorrt"]["status"] == rows["tensorrt int8"]["status"] == "skipped"
    assert "hwnas GPU check" in proc.stdout and report["size"] == "ci"


def test_a_failing_step_is_a_row_with_its_error_and_the_others_still_run():
    def broken() -> dict:
        raise RuntimeError("NCCL error: unhandled system error")

    def absent() -> dict:
        raise Skipped("tensorrt is not importable here")

    rows = run_steps([("a", broken), ("b", absent), ("c", lambda: {"x": 1})])
    assert [r["status"] for r in rows] == ["failed", "skipped", "ok"]
    assert rows[0]["figures"] == {"error": "RuntimeError: NCCL error: unhandled system error"}
    assert "Traceback" in rows[0]["traceback"] and rows[2]["figures"] == {"x": 1}


class FakeNvml:
    """Stands in for pynvml on a host without a GPU: a total-energy counter (mJ) of a device drawing
    10 W at rest and 100 W more for each second of this process's CPU time, so a window of calls
    reads more than an idle one, as NVML's does on a GPU."""

    def __init__(self):
        self.start = (time.perf_counter(), time.process_time())

    def nvmlInit(self):
        return None

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        wall, cpu = time.perf_counter() - self.start[0], time.process_time() - self.start[1]
        return int((10 * wall + 100 * cpu) * 1000)


@pytest.mark.slow
def test_energy_step_takes_nvmls_measured_path_with_a_stand_in_counter(tmp_path):
    table_step(CI, "mini", ((32, 32),), 4, tmp_path)
    figures = energy_step(CI, tmp_path, meter=NvmlMeter(nvml=FakeNvml()))
    assert figures["source"] == "measured-nvml" and figures["idle_w"] == pytest.approx(10, rel=0.3)
    assert all(mj > 0 for mj in figures["blocks_mj"]) and figures["subnet_mj"] > 0


def test_ddp_uses_nccl_only_when_every_process_has_a_gpu_of_its_own():
    assert dist_backend("cuda", local_world=2, gpus=2) == "nccl"
    assert dist_backend("cuda", local_world=2, gpus=1) == "gloo"  # NCCL refuses two ranks on one GPU
    assert dist_backend("cpu", local_world=2, gpus=0) == "gloo"
    assert [rank_device("cuda", r, 2) for r in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert rank_device("cuda:1", 0, 2) == "cuda:1" and rank_device("cpu", 1, 0) == "cpu"


@pytest.mark.slow
def test_bf16_channels_last_training_resumes_exactly():
    """What the GPU runs (bf16 autocast, NHWC) resumes bit for bit, here on the CPU's bf16 autocast."""
    space = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(64, 64), train_size=16, val_size=8)
    config = TrainConfig(epochs=2, batch_size=8, precision="bf16", channels_last=True)
    with tempfile.TemporaryDirectory() as folder:
        straight, resumed = Path(folder) / "a.pt", Path(folder) / "b.pt"
        for out, until in ((straight, None), (resumed, 1), (resumed, None)):
            model = create(space, task="saliency", num_classes=1, seed=0)
            fit(model, space=space, data=data, task=SaliencyTask(), config=config, out=out, until=until)
        a, b = load(straight).data, load(resumed).data
    assert a["config"]["precision"] == "bf16" and a["config"]["channels_last"] is True
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_gpu_training_options_are_refused_at_the_edge_on_a_cpu(tmp_path):
    for args, message in (
        (["--precision", "fp16"], "--precision fp16 needs a CUDA device"),
        (["--amp"], "--precision fp16 needs a CUDA device"),
        (["--precision", "fp8"], "unknown --precision 'fp8'; allowed: fp32, bf16, fp16"),
        (["--amp", "--precision", "bf16"], "--amp means --precision fp16, not bf16"),
        (["--torch-device", "cuda", "--precision", "bf16"], "this host has no CUDA GPU"),
    ):
        for verb in ("supernet", "selfkd"):
            line = one_error_line(run_cli("train", verb, *args, "--out", str(tmp_path / "x.pt"), check=False))
            assert message in line, line
    assert not (tmp_path / "x.pt").exists()
