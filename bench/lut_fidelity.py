"""LUT fidelity and profiling time (issue targets: >= 95% of held-out subnets within 10%, Kendall
tau >= 0.9; a full alphanet table on `cpu` in under 10 minutes).

For each device: build the full alphanet table (both resolutions, timed), then validate at 256x192
with N subnets (half fit the calibration, half are held out), each measured in `--rounds` interleaved
rounds. Beside the table's figures it prints the measurement's own repeatability: the held-out
subnets' Kendall tau between the first and the second half of the rounds (two independent
measurements), the ceiling for any table's tau on this machine at the time of the run.
Prints one row per device; writes the tables under bench/out/.
Usage: python -m bench.lut_fidelity [--devices cpu,cpu-tflite] [--samples 200] [--rounds 8]
       python -m bench.lut_fidelity --devices cpu --space mosegnas --task segmentation --resolution 512x256
(another space and head: validated at the first --resolution given, alphanet's at 256x192).
Run it on an otherwise idle machine: every other process on the 2 cores shows up in the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.common import machine, save
from hwnas.hardware.device import load_device
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import LatencyTable, sidecar_path
from hwnas.hardware.validation import validate
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"


class Log:
    """Progress on stderr every 30 s, and when the subnets' conversion ended (their first round)."""

    def __init__(self, what: str):
        self.what, self.last, self.converted_s = what, 0.0, None

    def __call__(self, done: int, total: int, label: str) -> None:
        if done > 0 and self.converted_s is None and label.startswith("round"):
            self.converted_s = time.perf_counter()
        if time.perf_counter() - self.last > 30:
            self.last = time.perf_counter()
            print(f"  {time.strftime('%H:%M:%S')} {self.what}: {done}/{total} {label}", file=sys.stderr, flush=True)


def run(
    device_name: str,
    samples: int,
    rounds: int,
    resolutions: list[tuple[int, int]] | None,
    reuse: bool,
    space_name: str = "alphanet",
    task: str = "saliency",
) -> dict:
    """Build the table afresh (timed), or with `reuse` finish an existing one (untimed), then validate."""
    device = load_device(device_name)
    space = SearchSpace.load(space_name)
    suffix = "" if space_name == "alphanet" else f"-{space_name}"
    path = OUT / f"{device_name}-{space_name}.parquet"
    if not reuse:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
    start = time.perf_counter()
    progress = Log(f"{device_name} table")
    table = profile(device, space, task=task, resolutions=resolutions, out=path, progress=progress).table
    profile_s = None if reuse else time.perf_counter() - start
    start, log = time.perf_counter(), Log(f"{device_name} subnets")
    result = validate(
        device,
        LatencyTable.load(path, space),
        samples=samples,
        seed=0,
        resolution=resolutions[0] if resolutions and space_name != "alphanet" else (256, 192),
        rounds=rounds,
        progress=log,
    )
    validate_s = time.perf_counter() - start
    save(OUT / f"{device_name}{suffix}-validation.json", result.to_dict())
    return {
        "device": device_name + suffix,
        "signatures": len(table),
        "profile_s": profile_s,
        "validate_s": validate_s,
        "convert_s": log.converted_s - start if log.converted_s else None,
        "rounds": rounds,
        "overhead_us": table.overhead_ms * 1000,
        "result": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="cpu,cpu-tflite")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8, help="end-to-end rounds per subnet (two halves of 4)")
    parser.add_argument("--reuse-table", action="store_true", help="keep an existing table (its build is not timed)")
    parser.add_argument("--resolution", action="append", help="WxH to profile (default: both)")
    parser.add_argument("--space", default="alphanet")
    parser.add_argument("--task", default="saliency")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    resolutions = [tuple(int(v) for v in r.split("x")) for r in args.resolution] if args.resolution else None
    print(f"machine: {machine()}")
    print(
        "device      sigs  profile   n_held  raw within10  tau_raw | held-out as stored: MAPE  within5 "
        "within10 (count, 95% interval)  tau    rho   | re-measured tau"
    )
    summary = OUT / "lut_fidelity.json"
    rows = json.loads(summary.read_text())["rows"] if summary.exists() else []  # other devices' rows stay
    for name in args.devices.split(","):
        row = run(name, args.samples, args.rounds, resolutions, args.reuse_table, args.space, args.task)
        rows = [r for r in rows if r["device"] != row["device"]] + [{k: v for k, v in row.items() if k != "result"}]
        save(summary, {"rows": rows})
        r = row["result"]
        raw, after = r.holdout_before, r.holdout_after
        built = "reused" if row["profile_s"] is None else f"{row['profile_s'] / 60:.1f} min"
        if row["convert_s"] is not None:
            print(f"{name}: {len(r.archs)} subnets converted in {row['convert_s'] / 60:.1f} min", file=sys.stderr)
        print(
            f"{row['device']:<11} {row['signatures']:>4}  {built:>9}  {after.n:>4}  "
            f"{raw.within_10:10.0%}  {raw.kendall_tau:7.3f} | {after.mape:27.1f}% {after.within_5:7.0%} "
            f"{after.share_text(after.within_10)}  {after.kendall_tau:.3f}  {after.spearman_rho:.3f} | "
            f"{r.repeatability.kendall_tau:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
