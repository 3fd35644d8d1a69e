"""How long the default `hwnas profile` of `mini` takes, and whether a faster protocol keeps the
table's fidelity (issue 33: the default profile of mini in under 2 minutes on this 2-core machine).

Builds the table of `mini` on `cpu` (all three resolutions) once per setting, timed, in one run;
then measures the same subnets end to end (8 per resolution: min, max and random ones, in
`--rounds` interleaved rounds, aggregated by the median as the tables are) and scores each table's
raw block sums against those measurements (Kendall tau, MAPE) and, through a calibration line per
resolution fitted on half the subnets, the held-out half's MAPE (what a search prices with once the
table is checked). Every setting is judged on the same measurements, so they compare within the run.
Settings: `before` (4 rounds, noise judged by the plain CV, 50 ms of timed calls and of warm-up at
least: the defaults until issue 33) and `default` (the defaults now), plus any given as
`--also rounds=4,robust_cv=0,min_run_s=0.05`. Beside them, the measurement's own repeatability: the
subnets' first half of rounds against the second (no table can rank them better).
`--seed` draws other subnets (the defaults were chosen on seed 0's; report another seed too).
Usage: python -m bench.profile_speed [--samples 24] [--rounds 4] [--also SETTINGS ...]
Writes bench/out/profile_speed.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.hardware.backends import Protocol
from hwnas.hardware.device import load_device
from hwnas.hardware.measurer import LocalMeasurer, aggregate
from hwnas.hardware.profiling import DEFAULT_ROUNDS, profile
from hwnas.hardware.table import Calibration, LatencyTable
from hwnas.hardware.validation import Fidelity, repeatability, validation_archs
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out" / "profile_speed.json"


def setting(text: str) -> dict:
    """`rounds=2,robust_cv=0` -> {"rounds": 2, "robust_cv": False}; other keys are Protocol fields."""
    out: dict = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key] = int(value) if key == "rounds" else (bool(int(value)) if key == "robust_cv" else float(value))
    return out


def build(name: str, options: dict, folder: Path) -> tuple[LatencyTable, float]:
    options = dict(options)
    rounds = options.pop("rounds", DEFAULT_ROUNDS)
    protocol = dataclasses.replace(Protocol(), **options)
    start = time.perf_counter()
    result = profile("cpu", "mini", out=folder / f"{name}.parquet", rounds=rounds, protocol=protocol, validate=False)
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s for {len(result.table)} blocks", file=sys.stderr, flush=True)
    return result.table, seconds


def calibrate(raw: np.ndarray, measured: np.ndarray, keys: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Raw sums through each resolution's line fitted on its subnets not `held` out (as `lut validate`
    fits it): the table's scale error, which drifts with the machine's speed, taken out."""
    out = raw.copy()
    for key in np.unique(keys):
        at = keys == key
        line = Calibration.fit(raw[at & ~held], measured[at & ~held])
        out[at] = line.apply(raw[at])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the end-to-end measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subnets measured end to end")
    parser.add_argument("--also", action="append", default=[], help="another setting, e.g. rounds=2,robust_cv=0")
    args = parser.parse_args()
    before = {"rounds": 4, "robust_cv": False, "min_run_s": 0.05, "warmup_min_s": 0.05}  # until issue 33
    settings = {"before": before, "default": {}}
    settings.update({text: setting(text) for text in args.also})
    space = SearchSpace.load("mini")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        built = {name: build(name, options, Path(folder)) for name, options in settings.items()}
        archs = validation_archs(space, args.samples, args.seed, list(space.resolutions))
        per_round = LocalMeasurer(load_device("cpu")).archs(
            space, archs, "saliency", num_classes=1, rounds=args.rounds, statistic="median", protocol=Protocol()
        )
        measured = aggregate(per_round, "median")
        keys = np.array([a.resolution for a in archs])[:, 0]
        held = np.arange(len(archs)) % 2 == 1  # at each resolution, every other subnet judges the line
        for name, (table, seconds) in built.items():
            raw = np.array([table.raw_ms(a) for a in archs])
            fidelity = Fidelity.of(raw, measured)
            calibrated = calibrate(raw, measured, keys, held)
            after = Fidelity.of(calibrated[held], measured[held])
            rows.append(
                {"setting": name, "options": settings[name], "seconds": seconds, **asdict(fidelity),
                 "heldout_calibrated_mape": after.mape, "heldout_calibrated_within_10": after.within_10}
            )  # fmt: skip
    itself = repeatability(per_round, "median")
    print(
        f"machine: {machine()}; mini on cpu, {len(archs)} subnets (seed {args.seed}) measured end to end in "
        f"{args.rounds} rounds; the measurement against itself: Kendall tau {itself.kendall_tau:.3f}"
    )
    print("| setting | seconds | Kendall tau | raw MAPE % | held-out MAPE % after calibration | within 10% |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [r["setting"], f"{r['seconds']:.1f}", f"{r['kendall_tau']:.3f}", f"{r['mape']:.1f}"]
        cells += [f"{r['heldout_calibrated_mape']:.1f}", f"{r['heldout_calibrated_within_10']:.0%}"]
        print("| " + " | ".join(cells) + " |")
    out = OUT.with_name(f"profile_speed-seed{args.seed}.json") if args.seed else OUT
    data = {"rows": rows, "samples": len(archs), "rounds": args.rounds, "seed": args.seed}
    save(out, {**data, "repeatability": asdict(itself)})


if __name__ == "__main__":
    main()
