"""Which statistic of a block's round medians a table should keep, and whether its 95% interval
holds (issue 48, point 1: "the statistic is chosen by measurement on this machine").

Builds the same table twice, one build after the other, each in `--rounds` interleaved rounds
(every round's per-block median kept), then, for the first k rounds of each build (k = 2 ..
`--rounds`) and each candidate statistic of those k round medians (`hwnas.hardware.precision.
STATISTICS`: the median, the mean, the geometric mean, a 20% trimmed mean, the lower quartile):

- agreement: the share of rows whose two builds' figures are within 5% of each other (the issue's
  target for two builds), and their median relative difference; and the same after dividing out
  the builds' common shift (the median ratio of their rows: the whole machine faster or slower
  during one build, which scales every row alike and which a calibration on whole subnets absorbs);
- the interval: with `hwnas.hardware.precision.interval` (Student's t on the log round medians), the
  share of rows whose two builds differ by less than the two intervals allow (|log a - log b| below
  the root sum of squares of the two half-widths): about 95% where the interval is honest, less
  where it is too narrow; and the share of rows precise to the default target after k rounds.

Usage: python -m bench.round_statistic [--device cpu] [--space alphanet] [--resolution 256x192]
[--rounds 8]. Writes bench/out/round_statistic.json. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.hardware.precision import DEFAULT_TARGET, STATISTICS, interval, statistic_of
from hwnas.hardware.profiling import profile

OUT = Path(__file__).parent / "out" / "round_statistic.json"


def build(args: argparse.Namespace, path: Path) -> tuple[dict[str, list[float]], float]:
    start = time.perf_counter()
    table = profile(  # the default protocol (the sentinel watching), a fixed number of rounds
        args.device, args.space, resolutions=[args.resolution], out=path, rounds=args.rounds, validate=False
    ).table
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.0f} s for {len(table)} blocks", file=sys.stderr, flush=True)
    return {row["key"]: list(row["round_medians_ms"]) for _, row in table.rows.iterrows()}, seconds


def compare(a: dict[str, list[float]], b: dict[str, list[float]], rounds: int) -> list[dict]:
    keys = sorted(a)
    rows = []
    for k in range(2, rounds + 1):
        for name in STATISTICS:
            fa = np.array([statistic_of(a[key][:k], name) for key in keys])
            fb = np.array([statistic_of(b[key][:k], name) for key in keys])
            diff = np.abs(fa - fb) / np.minimum(fa, fb)
            shift = float(np.median(fb / fa))
            unshifted = np.abs(fa * shift - fb) / np.minimum(fa * shift, fb)
            half_a = np.array([interval(a[key][:k], estimate=1.0)[1] - 1.0 for key in keys])
            half_b = np.array([interval(b[key][:k], estimate=1.0)[1] - 1.0 for key in keys])
            allowed = np.hypot(np.log1p(half_a), np.log1p(half_b))
            rows.append(
                {
                    "rounds": k,
                    "statistic": name,
                    "within_5": float((diff <= 0.05).mean()),
                    "median_difference": float(np.median(diff)),
                    "shift": shift,
                    "within_5_unshifted": float((unshifted <= 0.05).mean()),
                    "within_intervals": float((np.abs(np.log(fa / fb)) <= allowed).mean()),
                    "precise": float(((half_a <= DEFAULT_TARGET).mean() + (half_b <= DEFAULT_TARGET).mean()) / 2),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--space", default="alphanet")
    parser.add_argument("--resolution", default="256x192")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print(machine(), file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        a, seconds_a = build(args, Path(folder) / "a.parquet")
        b, seconds_b = build(args, Path(folder) / "b.parquet")
    rows = compare(a, b, args.rounds)
    print(
        f"{'rounds':>6} {'statistic':>10} {'within 5%':>9} {'median diff':>11} {'b/a':>6} {'unshifted 5%':>12} "
        f"{'within CIs':>10} {'precise':>8}"
    )
    for row in rows:
        print(
            f"{row['rounds']:>6} {row['statistic']:>10} {row['within_5']:>9.1%} {row['median_difference']:>11.2%} "
            f"{row['shift']:>6.3f} {row['within_5_unshifted']:>12.1%} {row['within_intervals']:>10.1%} "
            f"{row['precise']:>8.1%}"
        )
    save(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "build_s": [seconds_a, seconds_b],
                    "blocks": len(a), "rows": rows, "round_medians_ms": {"a": a, "b": b}})  # fmt: skip


if __name__ == "__main__":
    main()
