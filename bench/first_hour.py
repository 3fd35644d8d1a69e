"""A newcomer's first hour in one run (issue 33's targets on this 2-core machine): the default
`hwnas profile` of `mini` (with its end-to-end check) under 2 minutes, `hwnas search --space mini
--proxy flops --evals 64` under 30 s (nothing is evaluated: the searcher's own time), and the
NAS-Bench-201 mosegnas and natv2 searches at 100 queries under 15 s each, with their hypervolume
ratio and regret (`bench.nb201`'s measures) beside the time, and the same searches without their
warm start (`--set warm_start=false`: every generation afresh, as before) timed in the same run.

The two CLI runs go through a subprocess, as a user types them, in an empty folder, so their
seconds include starting Python and importing torch. Usage: python -m bench.first_hour
[--devices pixel3,...] [--seeds 1]. Writes bench/out/first_hour.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from bench.nb201 import exact, one_run
from hwnas.space.nb201 import Benchmark

OUT = Path(__file__).parent / "out" / "first_hour.json"
TARGETS = {"profile": 120.0, "proxy search": 30.0, "mosegnas": 15.0, "natv2": 15.0}


def timed_cli(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hwnas.cli", *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hwnas {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="pixel3", help="NAS-Bench-201 latency columns, comma-separated")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        profile = ("profile", "--device", "cpu", "--space", "mini")
        rows.append({"what": "profile", "seconds": timed_cli(*profile, cwd=here)})
        proxy = ("search", "--device", "cpu", "--space", "mini", "--budget", "30ms", "--proxy", "flops")
        rows.append({"what": "proxy search", "seconds": timed_cli(*proxy, "--evals", "64", cwd=here)})
    table = Benchmark.load(None)
    for algo, settings in [(a, s) for a in ("mosegnas", "natv2") for s in (None, ["warm_start=false"])]:
        runs = []
        for device in args.devices.split(","):
            truth = exact(table, device, "cifar100_val")
            runs += [
                one_run(table, device, "cifar100_val", algo, 100, seed, truth, settings=settings)
                for seed in range(args.seeds)
            ]
        rows.append(
            {
                "what": algo if settings is None else f"{algo}, {settings[0]}",
                "seconds": float(np.median([r["seconds"] for r in runs])),
                "hv_ratio": float(np.median([r["hv_ratio"] for r in runs])),
                "regret_val_p50": float(np.median([r["regret_val"][1] for r in runs])),
                "runs": len(runs),
            }
        )
    print(f"machine: {machine()}")
    print("| what | seconds | target | HV ratio | regret p50 |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        hv = f"{r['hv_ratio']:.4f}" if "hv_ratio" in r else "-"
        regret = f"{r['regret_val_p50']:.2f}" if "regret_val_p50" in r else "-"
        target = f"< {TARGETS[r['what']]:.0f}" if r["what"] in TARGETS else "-"
        print(f"| {r['what']} | {r['seconds']:.1f} | {target} | {hv} | {regret} |")
    save(OUT, {"rows": rows, "targets": TARGETS, "devices": args.devices, "seeds": args.seeds})


if __name__ == "__main__":
    main()
