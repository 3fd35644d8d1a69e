"""Few-shot tables on the SalNAS spaces, held out one runtime at a time, beside the full profiles
(issue 37 points 1 and 3).

For each runtime that runs here (ONNX Runtime `cpu`, LiteRT `cpu-tflite`, torch `cpu-torch`):
build its full alphanet table at one resolution (timed: the device time a full profile costs,
without profile's closing check), and measure one shared set of whole subnets on it (`--samples`,
`--rounds` interleaved rounds). Then each runtime in turn is the "new device": its table is
predicted by `hwnas profile --few-shot N` from the other two runtimes' full tables (timed: the
device time the few-shot profile costs), and both tables, full and few-shot, are judged on the same
measured subnets by `lut validate`'s protocol (`hwnas.hardware.validation.judge`: extremes in the
fitting half, a line kept only where leave-one-out on the fitting half says it helps, held-out
figures of what is stored, each share with its count and 95% interval). The held-out half never
overlaps the few-shot table's measured subnets (checked). Beside them: the measurement's own
repeatability (held-out subnets, first half of the rounds against the second).

Usage: python -m bench.fewshot_profile [--devices cpu,cpu-tflite,cpu-torch] [--samples 64] [--rounds 8]
       [--few-shot 10] [--resolution 256x192] [--space alphanet] [--out bench/out/fewshot_profile.json]
Run it on an otherwise idle machine. Writes bench/out/fewshot_profile.json and the tables under
bench/out/fewshot_profile/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.hardware.backends import Protocol
from hwnas.hardware.device import load_device
from hwnas.hardware.fewshot import fewshot_profile
from hwnas.hardware.measurer import LocalMeasurer
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import LatencyTable, sidecar_path
from hwnas.hardware.validation import Fidelity, judge, validation_archs
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"
TABLES = OUT / "fewshot_profile"


def log(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def fidelity(f: Fidelity) -> dict:
    return {**vars(f), "within_10_text": f.share_text(f.within_10), "within_5_text": f.share_text(f.within_5)}


def full_table(device: str, space: SearchSpace, resolution: tuple[int, int]) -> tuple[Path, float]:
    path = TABLES / f"{device}-{space.name}.parquet"
    path.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    start = time.perf_counter()
    profile(device, space, resolutions=[resolution], out=path, validate=False)
    return path, time.perf_counter() - start


def judged(path: Path, space: SearchSpace, archs, per_round, resolution) -> dict:
    """`lut validate`'s figures of the table at `path` on the subnets measured (the file untouched)."""
    table = LatencyTable.load(path, space)
    result = judge(table, archs, per_round, seed=0, resolutions=[resolution])
    [fit] = result.fits
    return {
        "held_out_raw": fidelity(result.holdout_before),
        "held_out_as_stored": fidelity(result.holdout_after),
        "line_kept": fit.applied,
        "line": vars(fit.calibration),
        "repeatability": fidelity(result.repeatability),
        "holdout": result.holdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="cpu,cpu-tflite,cpu-torch")
    parser.add_argument("--samples", type=int, default=64, help="whole subnets judged on (half held out)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--few-shot", type=int, default=10)
    parser.add_argument("--resolution", default="256x192")
    parser.add_argument("--space", default="alphanet")
    parser.add_argument("--out", type=Path, default=OUT / "fewshot_profile.json")
    args = parser.parse_args()
    space = SearchSpace.load(args.space)
    resolution = tuple(int(v) for v in args.resolution.split("x"))
    devices = args.devices.split(",")
    TABLES.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    archs = validation_archs(space, args.samples, 0, [resolution])
    rows: dict[str, dict] = {}
    for device in devices:
        path, profile_s = full_table(device, space, resolution)
        log(f"{device}: full table in {profile_s / 60:.1f} min; measuring {len(archs)} subnets")
        start = time.perf_counter()
        per_round = LocalMeasurer(load_device(device)).archs(
            space, archs, "saliency", rounds=args.rounds, statistic="median", protocol=Protocol()
        )
        rows[device] = {
            "table": str(path), "signatures": len(LatencyTable.load(path, space)), "profile_s": profile_s,
            "measure_s": time.perf_counter() - start, "per_round_ms": per_round.tolist(),
            "full": judged(path, space, archs, per_round, resolution),
        }  # fmt: skip
        log(f"{device}: measured in {rows[device]['measure_s'] / 60:.1f} min")
        save(args.out, {"archs": [str(a) for a in archs], "rows": rows})
    for device in devices:
        sources = [rows[d]["table"] for d in devices if d != device]
        out = TABLES / "predicted" / f"{device}-{space.name}.parquet"
        result = fewshot_profile(device, space, samples=args.few_shot, resolutions=[resolution], out=out,
                                 sources=sources, seed=0)  # fmt: skip
        row = rows[device]
        per_round = np.array(row["per_round_ms"])
        few = judged(out, space, archs, per_round, resolution)
        held = {str(a) for a, h in zip(archs, few["holdout"], strict=True) if h}
        assert not held & {str(a) for a in result.archs}, "a held-out subnet was among the few-shot's measured"
        row["fewshot"] = {
            **few, "sources": [Path(s).stem for s in sources], "samples": args.few_shot,
            "device_s": result.device_s, "weights": result.fit.weights, "intercept_ms": result.fit.intercept_ms,
            "loo_mape": result.fit.loo_mape, "time_saved": 1 - result.device_s / row["profile_s"],
        }  # fmt: skip
        log(f"{device}: few-shot from {', '.join(row['fewshot']['sources'])} in {result.device_s:.0f} s")
        save(args.out, {"archs": [str(a) for a in archs], "rows": rows})
    print(
        "device      table     device time  held-out as stored: within 10% (count, 95% interval)   MAPE   tau  "
        "| raw: within10  tau | repeatability tau"
    )
    for device in devices:
        row = rows[device]
        for kind, seconds in (("full", row["profile_s"]), ("fewshot", row.get("fewshot", {}).get("device_s"))):
            r = row[kind]
            stored, raw = r["held_out_as_stored"], r["held_out_raw"]
            label = "full" if kind == "full" else f"{args.few_shot}-shot"
            print(
                f"{device:<11} {label:<8} {seconds:9.0f} s  {stored['within_10_text']:>34}  {stored['mape']:5.1f}% "
                f"{stored['kendall_tau']:.3f} | {raw['within_10']:8.0%}  {raw['kendall_tau']:.3f} | "
                f"{r['repeatability']['kendall_tau']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
