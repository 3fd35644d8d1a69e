"""LatencyTable.predict_many throughput: 100k alphanet archs (target: under 1 s on this 2-core CPU).

The table is filled with synthetic costs (every alphanet signature at both resolutions): lookup
speed does not depend on the values. Usage: python bench/lut_predict.py [N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.hardware.backends.base import Timing
from hwnas.hardware.table import LatencyTable
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"


def main(n: int = 100_000) -> None:
    space = SearchSpace.load("alphanet")
    t = Timing(0.01, 0.01, 0.01, 0.01, 0.0, 1)
    table = LatencyTable.new(
        device={},
        versions={},
        space=space,
        task="saliency",
        resolutions=list(space.resolutions),
        overhead=t,
        protocol={},
    )
    for sig in space.all_block_signatures():
        table.record(sig, Timing(0.1, 0.1, 0.1, 0.1, 0.0, 1))
    rng = np.random.default_rng(0)
    _, xu = space.bounds()
    x = rng.integers(0, xu + 1, size=(n, space.n_var))
    start = time.perf_counter()
    table.predict_many(x[:10])  # builds the per-slot lookup arrays once
    build = time.perf_counter() - start
    start = time.perf_counter()
    table.predict_many(x)
    elapsed = time.perf_counter() - start
    print(f"machine: {machine()}")
    print(
        f"predict_many: {n:,} alphanet archs in {elapsed:.3f} s ({n / elapsed:,.0f} archs/s); "
        f"one-time lookup build {build:.2f} s"
    )
    OUT.mkdir(exist_ok=True)
    report = {"machine": machine(), "n": n, "seconds": elapsed, "build_s": build}
    save(OUT / "lut_predict.json", report)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
