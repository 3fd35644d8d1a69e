"""Calibration across resolutions and sizes (issue 22): which correction of the block sum the data
supports, judged on held-out subnets at both alphanet resolutions.

Builds (or, with --reuse-table, finishes) the `cpu` alphanet table at 256x192 and 384x288, measures
`--samples` subnets end to end with `hwnas.hardware.profiling.validate` (shared evenly between the two
resolutions, half of each fits, half is held out) and the per-call overhead of an identity model at
five tensor sizes. Then, on the held-out subnets of each resolution, it scores:

- raw: the block sum, one overhead `o` (8x8x8 identity) subtracted per block and counted once;
- one line @256x192: the line fitted at 256x192 applied at both (what tables did before);
- one line, pooled: one line fitted on both resolutions' calibration halves;
- a line per resolution: what `hwnas lut validate` stores now;
- size overhead + lines: each block's overhead taken from the identity curve at the block's output
  size, `sum_i (t_i - o(n_i)) + o(n_model)`, then a line per resolution.

Usage: python -m bench.lut_calibration [--samples 80] [--rounds 4] [--reuse-table]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.device import load_device
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import Calibration, LatencyTable, sidecar_path
from hwnas.hardware.validation import Fidelity, validate
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"
IDENTITY_SHAPES = [(1, 8, 8, 8), (1, 8, 32, 32), (1, 16, 64, 64), (1, 16, 128, 128), (1, 16, 256, 256)]


def overhead_curve(device) -> tuple[float, float, list[float]]:
    """(fixed ms, ms per million elements, the medians) of identity models over IDENTITY_SHAPES."""
    from hwnas.nn.static import IdentityModel

    backend = get_backend(device)
    medians = [backend.compile(IdentityModel(), [shape]).measure(Protocol()).median_ms for shape in IDENTITY_SHAPES]
    elements = np.array([np.prod(s) for s in IDENTITY_SHAPES]) / 1e6
    slope, fixed = np.polyfit(elements, medians, 1)
    return float(fixed), float(max(slope, 0.0)), medians


def size_raw(table: LatencyTable, arch_line: str, fixed: float, per_melement: float) -> float:
    """The block sum with each block's overhead taken at its output size."""
    space = table.space
    arch = space.parse(arch_line)
    total = 0.0
    for sig in space.block_signatures(arch, table.meta["task"]):
        n = sig.cout * (sig.out_h or sig.h) * (sig.out_w or sig.w) / 1e6
        total += table.rows_by_key(sig.key)[f"{table.statistic}_ms"] - (fixed + per_melement * n)
    w, h = arch.resolution
    return total + fixed + per_melement * (h * w / 1e6)


def score(predicted: np.ndarray, measured: np.ndarray) -> dict:
    f = Fidelity.of(predicted, measured)
    return {"mape": f.mape, "within_10": f.within_10, "tau": f.kendall_tau}


def compare(result: dict, table: LatencyTable, curve: tuple[float, float, list[float]]) -> dict:
    """Each correction's figures on the held-out subnets of each resolution (see the docstring);
    `result` is a `Validation.to_dict()`."""
    raw, measured = np.array(result["raw_ms"]), np.array(result["measured_ms"])
    res, held = np.array(result["resolutions"]), np.array(result["holdout"])
    sized = np.array([size_raw(table, a, curve[0], curve[1]) for a in result["archs"]])
    first = res == res[0]
    one_line = Calibration.fit(raw[first & ~held], measured[first & ~held])
    pooled = Calibration.fit(raw[~held], measured[~held])
    per_res, sized_per_res = raw.copy(), sized.copy()
    for key in np.unique(res):
        at, fit = res == key, (res == key) & ~held
        per_res[at] = Calibration.fit(raw[fit], measured[fit]).apply(raw[at])
        sized_per_res[at] = Calibration.fit(sized[fit], measured[fit]).apply(sized[at])
    variants = {
        "raw": raw,
        f"one line @{res[0]}": one_line.apply(raw),
        "one line, pooled": pooled.apply(raw),
        "a line per resolution": per_res,
        "size overhead + lines": sized_per_res,
    }
    rows = {}
    for name, predicted in variants.items():
        rows[name] = {
            key: score(predicted[(res == key) & held], measured[(res == key) & held]) for key in np.unique(res)
        }
        rows[name]["both"] = score(predicted[held], measured[held])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reuse-table", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    device, space = load_device("cpu"), SearchSpace.load("alphanet")
    path = OUT / "cpu-alphanet-both.parquet"
    if not args.reuse_table:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
    print(f"machine: {machine()}")
    start = time.perf_counter()
    table = profile(device, space, out=path).table
    print(f"table: {len(table)} signatures, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    curve = overhead_curve(device)
    print(f"identity overhead: {curve[0] * 1000:.1f} us + {curve[1] * 1000:.1f} us per million elements "
          f"(medians {', '.join(f'{m * 1000:.1f}' for m in curve[2])} us)")  # fmt: skip
    result = validate(device, table, samples=args.samples, seed=0, rounds=args.rounds)
    table.save(path)
    record = {"machine": machine(), "curve": curve, "validation": result.to_dict()}
    save(OUT / "lut_calibration.json", record)  # the measurement, kept first
    rows = compare(record["validation"], table, curve)
    keys = [k for k in rows["raw"] if k != "both"] + ["both"]
    print(f"held-out subnets: {sum(result.holdout)} ({', '.join(keys[:-1])}); MAPE % / within 10% / Kendall tau")
    print(f"{'correction':<24}" + "".join(f"{k:>26}" for k in keys))
    for name, by_res in rows.items():
        cells = "".join(
            f"{by_res[k]['mape']:>9.1f} {by_res[k]['within_10']:>6.0%} {by_res[k]['tau']:>8.3f} " for k in keys
        )
        print(f"{name:<24}{cells}")
    rep = result.repeatability
    print(f"re-measured (held-out, half the rounds each): Kendall tau {rep.kendall_tau:.3f}, MAPE {rep.mape:.1f}%")
    save(OUT / "lut_calibration.json", {**record, "rows": rows})


if __name__ == "__main__":
    main()
