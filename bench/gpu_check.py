"""Every GPU path of hwnas in one run (issue 22), for the few minutes a CUDA machine is lent.

On a CUDA machine, in under 8 minutes end to end, the steps of `hwnas.hardware.gpu_check` (tables
profiled and validated on `cuda-torch`, NVML energy, bf16 DDP training, a TensorRT engine if
`tensorrt` is importable). It prints one table and writes it as JSON (`--json`, default
bench/out/gpu_check.json). Without CUDA it prints one line and exits 0; `--cpu` runs the same steps
at CI size on this CPU (`cpu-torch`, gloo, energy from the device's power model: an estimate,
labelled so), which is what the tests run.

It needs what the GPU machine has (torch, numpy, pandas, pyarrow, scipy, rich, pynvml) and hwnas
from this tree (`PYTHONPATH=.`; `make gpu-check` sets it); tensorrt only if present.
Usage: python -m bench.gpu_check [--cpu] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from bench.common import save
from hwnas.hardware.gpu_check import CI, FULL, run_steps, steps_for

OUT = Path(__file__).resolve().parent / "out"


def environment(torch_device: str) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    if torch_device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def render(rows: list[dict], info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("step", "status", "seconds", "figures", title=f"hwnas GPU check: {info}")
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in row["figures"].items())
        table.add_row(row["step"], row["status"], f"{row['seconds']:.1f}", figures)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the CI-size form on this CPU")
    parser.add_argument("--json", type=Path, default=OUT / "gpu_check.json", help="where to write the table")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}): nothing checked; run it on an NVIDIA GPU")
        return 0
    size, torch_device = (CI, "cpu") if args.cpu else (FULL, "cuda")
    folder = args.json.parent
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = run_steps(steps_for(size, folder, torch_device=torch_device))
    info = {**environment(torch_device), "seconds": round(time.perf_counter() - start, 1)}
    render(rows, info)
    report = {"environment": info, "size": "ci" if args.cpu else "full", "rows": rows}
    save(args.json, report)
    return 1 if any(row["status"] == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
