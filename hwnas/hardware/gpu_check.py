"""The GPU check's steps (`make gpu-check`, `bench/gpu_check.py`): every GPU path of hwnas, each a call
of hwnas's own functions, sized to run in minutes on a lent CUDA machine (`FULL`) or in seconds on a
CPU (`CI`, what the tests run).

1. `table_step`: `hwnas.hardware.profiling.profile` and `validation.validate` on the `cuda-torch`
   device (PyTorch eager, CUDA-event timing on a non-default stream): signatures, per-call overhead,
   held-out fidelity after the per-resolution calibration, and the measurement's own repeatability;
2. `energy_step`: `profile_energy` with NVML's counter (`measured-nvml`) for a few blocks of a table,
   and `measure_inference_energy` of one whole subnet;
3. `train_step`: `hwnas train supernet` of a mini supernet for one epoch under
   `torch.distributed.run` with 2 processes (NCCL with a GPU each, gloo through the host where they
   share one), `--precision bf16 --channels-last --check-replicas`, images/s from the checkpoint;
4. `search_step`: `hwnas search` on mini with each subnet's accuracy scored on the torch device (16
   evaluations of the supernet the train step wrote, on the table the table step wrote);
5. `evaluate_step`: `hwnas evaluate` of its largest subnet on the torch device;
6. `subnet_step`: `hwnas train selfkd` of one subnet on the torch device (validation included);
7. `sharded_search_step`: the search of step 4 under torchrun with 2 processes, each scoring its
   share on the device, and whether its archive is the one-process archive;
8. `tensorrt_step`: an engine of a mini subnet built and timed with hwnas's TensorRT backend, its
   output against PyTorch's;
9. `tensorrt_int8_step`: the same subnet as an int8 engine from its QDQ graph, and what the engine
   inspector says its layers run at (a fallback from int8 named).

`run_steps` times each step; a step that fails is a row with its error, and the others still run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).resolve().parents[2]  # the folder hwnas is imported from, for the training processes


@dataclass(frozen=True)
class Size:
    """How much each step does: `FULL` on the GPU machine, `CI` on a CPU in the tests."""

    device: str  # the hwnas device spec the tables are measured on
    tables: tuple[tuple[str, tuple[tuple[int, int], ...] | None, int], ...]  # space, resolutions, samples
    rounds: int
    energy_table: str  # the space whose table's blocks the energy step measures
    energy_blocks: int
    train_args: tuple[str, ...]
    protocol: dict


FULL = Size(
    device="cuda-torch",
    tables=(("mini", None, 24), ("alphanet", ((256, 192),), 40)),
    rounds=2,
    energy_table="alphanet",
    energy_blocks=4,
    train_args=("--batch-size", "32", "--train-size", "1024", "--val-size", "64"),
    protocol={},
)
CI = Size(
    device="cpu-torch",
    tables=(("mini", ((32, 32),), 4),),
    rounds=1,
    energy_table="mini",
    energy_blocks=2,
    train_args=("--batch-size", "4", "--train-size", "16", "--val-size", "8", "--max-steps", "2"),
    protocol={"warmup_min_s": 0.0, "warmup_max_s": 0.05, "runs": 3, "min_run_s": 0.0},
)


def table_step(size: Size, space_name: str, resolutions, samples: int, folder: Path) -> dict:
    """Profile and validate one table on `size.device`; the figures of its held-out subnets."""
    from hwnas.hardware.backends import Protocol
    from hwnas.hardware.device import load_device
    from hwnas.hardware.profiling import profile
    from hwnas.hardware.table import sidecar_path
    from hwnas.hardware.validation import validate
    from hwnas.space import SearchSpace

    device, space = load_device(size.device), SearchSpace.load(space_name)
    path = folder / f"{device.name}-{space_name}.parquet"
    path.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    protocol = Protocol(**size.protocol)
    table = profile(device, space, resolutions=resolutions, out=path, rounds=size.rounds, protocol=protocol).table
    result = validate(device, table, samples=samples, seed=0, rounds=max(size.rounds, 2), protocol=protocol)
    table.save(path)
    after = result.holdout_after
    return {
        "signatures": len(table),
        "overhead_us": round(table.overhead_ms * 1000, 1),
        "held_out": after.n,
        "mape_pct": round(after.mape, 1),
        "within_10": round(after.within_10, 2),
        "kendall_tau": round(after.kendall_tau, 3),
        "remeasured_tau": None if result.repeatability is None else round(result.repeatability.kendall_tau, 3),
        "lines": {fit.resolution: [round(fit.calibration.slope, 3), fit.applied] for fit in result.fits},
    }


def energy_step(size: Size, folder: Path, meter=None) -> dict:
    """Energy per call of a few blocks of the table the table step wrote, and of its largest
    subnet, from `meter` (default: NVML's counter on the GPU, the spec's power model on a CPU)."""
    from hwnas.hardware.backends import get_backend
    from hwnas.hardware.device import load_device
    from hwnas.hardware.energy import choose_meter, measure_inference_energy
    from hwnas.hardware.profiling import profile_energy
    from hwnas.hardware.table import LatencyTable
    from hwnas.nn.factory import create
    from hwnas.space import SearchSpace

    device, space = load_device(size.device), SearchSpace.load(size.energy_table)
    path = folder / f"{device.name}-{space.name}.parquet"
    table = LatencyTable.load(path, space)
    meter = meter or choose_meter(device, kind="nvml" if device.torch_device == "cuda" else "spec")
    arch = replace(space.max(), resolution=tuple(table.meta["resolutions"][0]))
    sigs = space.block_signatures(arch, table.meta["task"])[: size.energy_blocks]
    profile_energy(device, table, sigs, path, meter=meter)
    w, h = arch.resolution
    runnable = get_backend(device).compile(create(space, arch=arch).eval(), [(1, 3, h, w)])
    whole = measure_inference_energy(runnable.bind(runnable.example_inputs()), meter, latency_ms=table.predict(arch))
    return {
        "source": meter.source,
        "blocks_mj": [round(table.rows_by_key(s.key)["energy_mj"], 4) for s in sigs],
        "subnet_mj": round(whole.joules_per_inference * 1000, 3),
        "subnet_w": round(whole.watts, 1),
        "idle_w": round(whole.idle_watts, 1),
    }


def train_step(size: Size, folder: Path, *, torch_device: str, port: int = 29533) -> dict:
    """One epoch of a mini supernet in bf16, channels_last, 2 DDP processes, replicas checked."""
    from hwnas.nn.checkpoint import load

    out = folder / "gpu-check-supernet.pt"
    out.unlink(missing_ok=True)
    args = ["train", "supernet", "--space", "mini", "--epochs", "1", *size.train_args]
    args += ["--precision", "bf16", "--channels-last", "--check-replicas", "--torch-device", torch_device]
    proc = _hwnas([*args, "--out", str(out)], folder, processes=2, port=port)
    record = load(out).data["history"][-1]
    return {
        "images_per_s": round(record["images_per_s"], 1),
        "seconds": round(record["seconds"], 1),
        "train_loss": round(record["train_loss"], 4),
        "replica_checks": record["replica_checks"],
        "processes": 2 if "2 process(es)" in proc.stdout else None,
    }


def _hwnas(args: list[str], folder: Path, *, processes: int = 1, port: int = 29533) -> subprocess.CompletedProcess:
    """`hwnas ARGS` in `folder`, as a user runs it (under torchrun with `processes` > 1, one thread
    each); a failure is a `StepFailed` naming its first error line."""
    cmd = [sys.executable, "-m", "hwnas"]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        cmd += ["--master_port", str(port), "-m", "hwnas"]
    path = os.pathsep.join(p for p in (str(SOURCE), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "COLUMNS": "200"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=420, env=env, cwd=folder)
    if proc.returncode != 0:  # torchrun ends with a banner: name the first error line, keep the tail
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        ours = [line for line in lines if line.startswith("error:")]  # hwnas's one-line errors first
        errors = ours or [line for line in lines if "Error" in line and not line.strip().startswith("raise ")]
        raise StepFailed(f"exit {proc.returncode}: {(errors or lines or [''])[0][:300]}", "\n".join(lines[-80:]))
    return proc


def _search_args(size: Size, folder: Path, out: Path, torch_device: str) -> list[str]:
    """`hwnas search` of 16 subnets of the train step's supernet, on the table step's mini table."""
    from hwnas.hardware.table import LatencyTable
    from hwnas.space import SearchSpace

    mini = SearchSpace.load("mini")
    lut = folder / f"{size.device}-mini.parquet"
    budget = f"{LatencyTable.load(lut, mini).predict(mini.min()) * 2.5:.6f}ms"
    return ["search", "--device", size.device, "--space", "mini", "--lut", str(lut), "--supernet",
            str(folder / "gpu-check-supernet.pt"), "--budget", budget, "--evals", "16", "--set", "per_generation=4",
            "--torch-device", torch_device, "--out", str(out)]  # fmt: skip


def _archive(folder: Path) -> list:
    import json

    return [(r["arch"], r["values"]) for r in json.loads((folder / "archive.json").read_text())["records"]]


def search_step(size: Size, folder: Path, *, torch_device: str) -> dict:
    """16 subnets of the train step's supernet scored on `torch_device` by `hwnas search`."""
    out = folder / "gpu-check-search-1"
    start = time.perf_counter()
    _hwnas(_search_args(size, folder, out, torch_device), folder)
    return {"evaluated": len(_archive(out)), "seconds": round(time.perf_counter() - start, 1)}


def sharded_search_step(size: Size, folder: Path, *, torch_device: str, port: int = 29534) -> dict:
    """The search step's search under torchrun with 2 processes; its archive against the step's."""
    out = folder / "gpu-check-search-2"
    start = time.perf_counter()
    _hwnas(_search_args(size, folder, out, torch_device), folder, processes=2, port=port)
    seconds = round(time.perf_counter() - start, 1)
    return {"evaluated": len(_archive(out)), "same_archive": _archive(out) == _archive(folder / "gpu-check-search-1"),
            "seconds": seconds}  # fmt: skip


def evaluate_step(size: Size, folder: Path, *, torch_device: str) -> dict:
    """`hwnas evaluate` of the supernet's largest subnet on `torch_device`: its scores."""
    import json

    out = folder / "gpu-check-evaluate.json"
    args = ["evaluate", "--supernet", str(folder / "gpu-check-supernet.pt"), "--arch", "max", "--input-size"]
    _hwnas([*args, "--torch-device", torch_device, "--json", str(out)], folder)
    row = json.loads(out.read_text())["rows"][0]
    return {"images": row["images"], **{k: round(v, 4) for k, v in row["scores"].items() if k in ("cc", "kld", "nss")}}


def subnet_step(size: Size, folder: Path, *, torch_device: str) -> dict:
    """One subnet trained a short epoch with Self-KD on `torch_device`, validated there."""
    from hwnas.nn.checkpoint import load

    out = folder / "gpu-check-subnet.pt"
    out.unlink(missing_ok=True)
    args = ["train", "selfkd", "--space", "mini", "--epochs", "1", *size.train_args, "--torch-device", torch_device]
    _hwnas([*args, "--out", str(out)], folder)
    record = load(out).data["history"][-1]
    return {"images_per_s": round(record["images_per_s"], 1), "val_cc": round(record["val"]["subnet"]["cc"], 4)}


def tensorrt_step(folder: Path) -> dict:
    """A mini subnet as a TensorRT engine (hwnas's backend), its output against PyTorch's and its time."""
    from hwnas.hardware.backends import get_backend
    from hwnas.hardware.device import load_device
    from hwnas.nn.factory import create
    from hwnas.space import SearchSpace

    device = load_device("rtx4090")  # TensorRT fp16 from ONNX; the spec's name is only a label here
    space = SearchSpace.load("mini")
    model = create(space, arch=space.max()).eval()
    w, h = space.max().resolution
    runnable = get_backend(device).compile(model, [(1, 3, h, w)])
    inputs = runnable.example_inputs()
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs[0])).numpy()
    timing = runnable.measure()
    return {"max_abs_error": float(np.abs(runnable.run(inputs)[0] - reference).max()), "median_ms": timing.median_ms}


def tensorrt_int8_step(folder: Path) -> dict:
    """A mini subnet as an int8 TensorRT engine (explicit quantization from the QDQ graph): what its
    inspector says each layer runs at, its output against PyTorch's over the output's range, its time."""
    from hwnas.hardware.backends import get_backend
    from hwnas.hardware.backends.tensorrt import inspect_engine, layer_precisions
    from hwnas.hardware.device import load_device
    from hwnas.nn.factory import create
    from hwnas.space import SearchSpace

    backend = get_backend(load_device("rtx4090-int8"))
    space = SearchSpace.load("mini")
    model = create(space, arch=space.max(), task="segmentation", seed=0).eval()
    w, h = space.max().resolution
    artifact = backend.prepare(model, [(1, 3, h, w)])
    layers = layer_precisions(inspect_engine(artifact.payload))
    runnable = backend.load(artifact)
    inputs = [np.random.default_rng(1).standard_normal((1, 3, h, w)).astype(np.float32)]
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs[0])).numpy()
    error = float(np.abs(runnable.run(inputs)[0] - reference).max() / (reference.max() - reference.min()))
    return {"layers": layers.line(), "fallbacks": len(layers.fallbacks), "max_abs_of_range": round(error, 4),
            "median_ms": runnable.measure().median_ms}  # fmt: skip


def run_steps(steps: list[tuple[str, Callable[[], dict]]]) -> list[dict]:
    """Each step timed; a failure becomes its row (with the error's last line), the rest still run."""
    rows = []
    for name, step in steps:
        start = time.perf_counter()
        try:
            row = {"step": name, "status": "ok", "figures": step()}
        except Skipped as skip:
            row = {"step": name, "status": "skipped", "figures": {"why": str(skip)}}
        except Exception as exc:  # one broken path must not hide the others' figures
            row = {"step": name, "status": "failed", "figures": {"error": f"{type(exc).__name__}: {exc}"}}
            row["traceback"] = exc.tail if isinstance(exc, StepFailed) else traceback.format_exc()[-4000:]
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    return rows


class Skipped(Exception):
    """A step that cannot run on this machine, and says why."""


class StepFailed(Exception):
    """A step's subprocess failed: the first error line, and the output's tail for the JSON."""

    def __init__(self, message: str, tail: str):
        super().__init__(message)
        self.tail = tail


def steps_for(size: Size, folder: Path, *, torch_device: str) -> list[tuple[str, Callable[[], dict]]]:
    steps = []
    for space_name, resolutions, samples in size.tables:
        label = space_name + ("" if resolutions is None else " " + ",".join(f"{w}x{h}" for w, h in resolutions))
        steps.append(
            (f"table {label}", lambda s=space_name, r=resolutions, n=samples: table_step(size, s, r, n, folder))
        )  # noqa: E501
    steps.append(("energy", lambda: energy_step(size, folder)))
    steps.append(("train ddp bf16", lambda: train_step(size, folder, torch_device=torch_device)))
    steps.append(("search on device", lambda: search_step(size, folder, torch_device=torch_device)))
    steps.append(("evaluate on device", lambda: evaluate_step(size, folder, torch_device=torch_device)))
    steps.append(("train subnet selfkd", lambda: subnet_step(size, folder, torch_device=torch_device)))
    steps.append(("search 2 processes", lambda: sharded_search_step(size, folder, torch_device=torch_device)))

    def tensorrt() -> dict:
        if torch_device != "cuda" or importlib.util.find_spec("tensorrt") is None:
            raise Skipped("tensorrt is not importable here" if torch_device == "cuda" else "no GPU in --cpu form")
        return tensorrt_step(folder)

    steps.append(("tensorrt", tensorrt))

    def tensorrt_int8() -> dict:
        if torch_device != "cuda" or importlib.util.find_spec("tensorrt") is None:
            raise Skipped("tensorrt is not importable here" if torch_device == "cuda" else "no GPU in --cpu form")
        return tensorrt_int8_step(folder)

    steps.append(("tensorrt int8", tensorrt_int8))
    return steps
