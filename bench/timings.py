"""Timings that hold (issue 48, point 5): the table built with today's protocol and with the one
before issue 48, each twice, judged against a long reference measurement of held-out subnets.

One run, on one machine, in this order:

1. the reference: `--subnets` random subnets of the space at `--resolution` (none of them a subnet
   the profiles' own end-to-end checks measure: those are seeded 0 and hold the smallest and
   largest) timed whole in `--reference-rounds` interleaved rounds (`LocalMeasurer.archs`, the
   geometric mean of the rounds' medians), with its own repeatability: the first half of the rounds
   against the second;
2. four builds of the table, interleaved (before A, now A, before B, now B), each the full `hwnas
   profile` at that resolution with its end-to-end check, timed: `before` is the protocol of main
   before issue 48 (exactly 2 rounds, no machine check or sentinel, rows predicting with the
   median of their round medians), `now` the defaults (at least 3 rounds, more until +-3%, up to 6;
   the machine checked and watched; the geometric mean);
3. for each build, its predictions (calibrated as stored) against the reference: the share within
   10%, MAPE, Kendall tau, and, for `now`, how many reference figures lie inside the prediction's
   95% interval (`LatencyTable.predict_interval`); for each protocol, the two builds' agreement row
   by row (share of rows within 5%) and the share of rows flagged imprecise.

`--neighbour` runs all of it beside `bench.neighbour` (one core busy in seeded bursts of 0.2-3 s at
50% duty). Run it alone on the machine, twice at different times, with and without the neighbour.
Usage: python -m bench.timings [--space alphanet] [--resolution 256x192] [--subnets 32]
[--reference-rounds 20] [--neighbour]. Writes bench/out/timings[-neighbour]-HHMM.json.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from bench.common import machine, save
from bench.neighbour import Neighbour
from hwnas.hardware.backends import Protocol
from hwnas.hardware.device import load_device
from hwnas.hardware.measurer import LocalMeasurer, aggregate
from hwnas.hardware.precision import Precision
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import LatencyTable
from hwnas.hardware.validation import Fidelity, repeatability, validation_archs
from hwnas.space import SearchSpace
from hwnas.space.arch import parse_resolution

OUT = Path(__file__).parent / "out"
PROTOCOLS = {
    "before": {"precision": Precision.fixed(2), "watch": False, "statistic": "median"},
    "now": {},
}


def held_out(space: SearchSpace, resolution: tuple[int, int], count: int) -> list:
    """`count` random subnets, none measured by the profiles' own checks (seed 0, min and max)."""
    checked = set(validation_archs(space, 6, 0, [resolution]))
    rng = np.random.default_rng(1000)
    found: dict = {}
    while len(found) < count:
        arch = replace(space.sample(rng), resolution=resolution)
        if arch not in checked:
            found[arch] = None
    return list(found)


def judged(table: LatencyTable, archs: list, reference: np.ndarray) -> dict:
    predicted = np.array([table.predict(a) for a in archs])
    fidelity = Fidelity.of(predicted, reference)
    intervals = [table.predict_interval(a) for a in archs]
    inside = [p.contains(m) for p, m in zip(intervals, reference, strict=True)]
    return {
        **asdict(fidelity),
        "within_10_text": fidelity.share_text(fidelity.within_10),
        "inside_interval": float(np.mean(inside)),
        "interval_half_width": float(np.median([(p.high_ms - p.low_ms) / 2 / p.estimate_ms for p in intervals])),
        "imprecise": len(table.imprecise()),
        "rows": len(table),
    }


def agreement(a: LatencyTable, b: LatencyTable) -> float:
    """The share of rows whose two builds predict within 5% of each other."""
    fa, fb = a.block_ms(), b.block_ms()
    diff = np.array([abs(fa[k] - fb[k]) / min(fa[k], fb[k]) for k in fa])
    return float((diff <= 0.05).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="alphanet")
    parser.add_argument("--resolution", default="256x192")
    parser.add_argument("--subnets", type=int, default=32)
    parser.add_argument("--reference-rounds", type=int, default=20)
    parser.add_argument("--neighbour", action="store_true")
    args = parser.parse_args()
    print(machine(), time.strftime("%Y-%m-%d %H:%M"), "neighbour" if args.neighbour else "idle", file=sys.stderr)
    space = SearchSpace.load(args.space)
    resolution = parse_resolution(args.resolution)
    archs = held_out(space, resolution, args.subnets)
    device = load_device("cpu")
    results: dict = {"builds": []}
    with Neighbour(seed=0) if args.neighbour else contextlib.nullcontext(), tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        per_round = LocalMeasurer(device).archs(
            space, archs, "saliency", rounds=args.reference_rounds, statistic="geomean", protocol=Protocol()
        )
        reference = aggregate(per_round, "geomean")
        itself = repeatability(per_round, "geomean")
        results["reference"] = {"seconds": time.perf_counter() - start, "ms": reference.tolist(),
                                "repeatability": asdict(itself)}  # fmt: skip
        print(f"reference: {len(archs)} subnets x {args.reference_rounds} rounds; its halves: within 10% "
              f"{itself.within_10:.0%}, tau {itself.kendall_tau:.3f}", file=sys.stderr, flush=True)  # fmt: skip
        tables: dict = {}
        for build in ("A", "B"):
            for name, options in PROTOCOLS.items():
                path = Path(tmp) / f"{name}-{build}.parquet"
                said: list[str] = []
                start = time.perf_counter()
                done = profile(device, space, resolutions=[resolution], out=path, on_wait=said.append,
                               on_check=lambda check, said=said: said.append(check.line()), **options)  # fmt: skip
                seconds = time.perf_counter() - start
                tables[(name, build)] = done.table
                fits = done.validation.fits if done.validation is not None else []
                lines = [{"resolution": f.resolution, "stored": f.applied, "slope": f.calibration.slope,
                          "intercept_ms": f.calibration.intercept_ms, "refusal": f.refusal, "noise_pct": f.noise_pct}
                         for f in fits]  # fmt: skip
                row = {"protocol": name, "build": build, "seconds": seconds, "said": said, "calibration": lines,
                       "raw_ratio": float(np.median([done.table.raw_ms(a) for a in archs] / reference)),
                       **judged(done.table, archs, reference)}  # fmt: skip
                results["builds"].append(row)
                print(f"{name} {build}: {seconds:.0f} s, within 10% {row['within_10_text']}, MAPE {row['mape']:.1f}%, "
                      f"tau {row['kendall_tau']:.3f}, inside its interval {row['inside_interval']:.0%} "
                      f"(+-{row['interval_half_width']:.0%}), "
                      f"{row['imprecise']} of {row['rows']} rows imprecise; raw sums {row['raw_ratio']:.2f}x the "
                      f"reference; line {'stored' if lines and lines[0]['stored'] else 'not stored'}",
                      file=sys.stderr, flush=True)  # fmt: skip
    results["agreement"] = {name: agreement(tables[(name, "A")], tables[(name, "B")]) for name in PROTOCOLS}
    print(f"machine: {machine()}; {args.space} at {args.resolution} on cpu, {'with' if args.neighbour else 'no'} "
          f"neighbour; reference {len(archs)} subnets x {args.reference_rounds} rounds, its halves within 10% "
          f"{itself.within_10:.0%} (tau {itself.kendall_tau:.3f})")  # fmt: skip
    print("| protocol | build | profile s | within 10% | MAPE % | Kendall tau | inside 95% interval (median +-) "
          "| rows imprecise |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results["builds"]:
        print(f"| {r['protocol']} | {r['build']} | {r['seconds']:.0f} | {r['within_10_text']} | {r['mape']:.1f} | "
              f"{r['kendall_tau']:.3f} | {r['inside_interval']:.0%} (+-{r['interval_half_width']:.0%}) | "
              f"{r['imprecise']} of {r['rows']} |")  # fmt: skip
    for name, share in results["agreement"].items():
        print(f"{name}: the two builds agree within 5% on {share:.0%} of rows")
    stem = f"timings{'-neighbour' if args.neighbour else ''}-{time.strftime('%H%M')}"
    save(OUT / f"{stem}.json", {"args": vars(args), **results})


if __name__ == "__main__":
    main()
