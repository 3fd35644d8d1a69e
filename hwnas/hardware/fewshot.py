"""A new device's latency table from a few whole subnets measured on it (`hwnas profile --few-shot N`).

A full profile times every block signature of a space on the device (alphanet at 256x192: 251
signatures). The few-shot table instead measures `N` whole subnets on the new device and predicts
every block from the tables of devices already profiled for the same space and head (the
"sources"), the SalNAS-space counterpart of `hwnas.hardware.transfer` (HELP, Lee et al., NeurIPS
2021, on NAS-Bench-201).

Model: the new device's subnet latency is a non-negative mix of the sources' raw block sums plus a
constant, `y(a) = sum_j w_j R_j(a) + b` with `w_j >= 0` (MoSegNAS Eq. 7 on each source: `R_j(a) =
sum_i (t_ji - o_j) + o_j`), fitted by bounded least squares (`scipy.optimize.lsq_linear`) on the N
measured subnets. It is linear in the block costs, so it is a table: block i costs `sum_j w_j (t_ji
- o_j) + o` with the per-call overhead `o = sum_j w_j o_j + b`, and the table's raw sum of any subnet
is exactly `y(a)`. The N subnets are chosen from a pool of random subnets (each resolution's
smallest and largest among them) by the sources' block sums (`transfer.choose_cells`: `spread`
takes one from each of N equal slices of the pool ordered by the sources' mean log latency, so the
line is fitted over the whole latency range; `random` draws them uniformly).

The table is marked as predicted (`meta["predicted"]`: the sources, the subnets measured, the fit,
the device time, the leave-one-out error on the N subnets) and `search`, `report` and `lut validate`
say so wherever they use it; `hwnas lut validate` checks it on more subnets and calibrates it like
any other table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from hwnas.hardware.agent.client import measurer_for
from hwnas.hardware.backends import Protocol
from hwnas.hardware.backends.base import Timing
from hwnas.hardware.device import Device
from hwnas.hardware.measurer import DEFAULT_STATISTIC, Measurer, Progress, aggregate, no_progress
from hwnas.hardware.table import LatencyTable, LutError, now, sidecar_path
from hwnas.hardware.transfer import SOURCE_CHOICES, choose_cells
from hwnas.hardware.validation import relative_error
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature
from hwnas.space.tasks import default_classes

POOL = 512  # random subnets the N measured ones are chosen from
SPARE = 2  # measured subnets beyond one per source: one for the constant, one to spare
DEFAULT_FEWSHOT_ROUNDS = 4  # interleaved rounds per measured subnet (a few subnets: cheap to repeat)


@dataclass(frozen=True)
class Fit:
    """The mix `y = sum_j weights[j] * R_j + intercept_ms` fitted on the measured subnets, and its
    leave-one-out error there (each subnet predicted by a fit on the others; None below 4 subnets)."""

    weights: list[float]
    intercept_ms: float
    loo_mape: float | None


def fit_mix(raw: np.ndarray, measured_ms: np.ndarray) -> Fit:
    """`Fit` of the measured latencies (n) on the sources' raw block sums (n x sources)."""
    weights, intercept = _solve(raw, measured_ms)
    loo = None
    if len(measured_ms) >= 4:
        guesses = []
        for i in range(len(measured_ms)):
            w, b = _solve(np.delete(raw, i, axis=0), np.delete(measured_ms, i))
            guesses.append(raw[i] @ w + b)
        loo = float(relative_error(np.array(guesses), measured_ms).mean() * 100)
    return Fit([float(w) for w in weights], float(intercept), loo)


def _solve(raw: np.ndarray, measured_ms: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.hstack([raw, np.ones((len(raw), 1))])
    lower = np.r_[np.zeros(raw.shape[1]), -np.inf]
    found = lsq_linear(design, measured_ms, bounds=(lower, np.inf)).x
    return found[:-1], float(found[-1])


@dataclass(frozen=True)
class FewShot:
    """What `fewshot_profile` did: the predicted table (saved at `path`), the subnets it measured
    whole and their latencies, the fit, the sources and the seconds spent on the device."""

    table: LatencyTable
    path: Path
    sources: list[str]
    archs: list[Arch]
    measured_ms: list[float]
    fit: Fit
    device_s: float


def fewshot_profile(
    device: str | Path | Device,
    space: str | Path | SearchSpace | None = None,
    *,
    samples: int,
    task: str = "saliency",
    classes: int | None = None,
    resolutions: list[str | tuple[int, int]] | None = None,
    out: str | Path | None = None,
    sources: list[str | Path] | None = None,
    seed: int = 0,
    choice: str = "spread",
    rounds: int = DEFAULT_FEWSHOT_ROUNDS,
    remote: str | None = None,
    token: str | None = None,
    devices_dir: str | Path | None = None,
    protocol: Protocol | None = None,
    measurer: Measurer | None = None,
    progress: Progress = no_progress,
) -> FewShot:
    """`hwnas profile --few-shot N`: measure `samples` whole subnets of `space` on `device` (in
    `rounds` interleaved rounds) and write the table `out` (default `lut/DEVICE-SPACE.parquet`)
    predicted from them and the source tables (`sources`, default every measured table of this
    space and head in `out`'s folder); see the module docstring. Every input, the sources and
    `samples` are checked before any measurement (one `HwnasError`)."""
    from hwnas.hardware.profiling import checked_inputs

    spec, space, resolutions, path = checked_inputs(
        device, space, task=task, classes=classes, resolutions=resolutions, out=out, rounds=rounds,
        statistic=DEFAULT_STATISTIC, energy=False, remote=remote, measurer=measurer, devices_dir=devices_dir,
    )  # fmt: skip
    classes = classes or default_classes(task)
    if choice not in SOURCE_CHOICES:
        raise LutError(f"unknown --choose '{choice}'; allowed: {', '.join(SOURCE_CHOICES)}")
    _refuse_overwriting_measurements(path, space)
    sigs = space.all_block_signatures(resolutions, task, classes)
    found = source_tables(space, task, classes, sigs, spec.name, path, sources)
    if samples < len(found) + SPARE:
        raise LutError(
            f"--few-shot {samples} is too few for {len(found)} source table(s): the fit has a weight per source "
            f"and a constant, and needs at least {len(found) + SPARE} measured subnets"
        )
    tables = [table for _, table in found]
    pool = candidate_archs(space, resolutions, seed)
    raw_pool = np.stack([t.predict_many(pool, calibrated=False) for t in tables], axis=1)
    if samples > len(pool):
        raise LutError(f"--few-shot {samples} is more than the {len(pool)} distinct subnets it chooses from")
    chosen = [pool[i] for i in choose_cells(raw_pool, samples, seed, choice)]
    measurer = measurer or measurer_for(spec, remote, token)
    start = time.perf_counter()
    per_round = measurer.archs(
        space, chosen, task, num_classes=classes, rounds=rounds, statistic=DEFAULT_STATISTIC,
        protocol=protocol or Protocol(), progress=progress,
    )  # fmt: skip
    device_s = time.perf_counter() - start
    measured = aggregate(per_round, DEFAULT_STATISTIC)
    raw = np.stack([t.predict_many(chosen, calibrated=False) for t in tables], axis=1)
    fit = fit_mix(raw, measured)
    table = _predicted_table(spec, space, task, classes, resolutions, tables, sigs, fit, measurer, protocol)
    table.meta["predicted"] = {
        "method": "few-shot: a non-negative mix of the sources' block costs fitted on whole subnets",
        "sources": [{"path": str(p), "device": t.meta["device"]["name"]} for p, t in found],
        "samples": samples, "seed": seed, "choice": choice, "rounds": rounds,
        "archs": [str(a) for a in chosen], "measured_ms": measured.tolist(),
        "weights": fit.weights, "intercept_ms": fit.intercept_ms, "loo_mape": fit.loo_mape,
        "device_s": device_s, "date": now(),
    }  # fmt: skip
    table.save(path)
    return FewShot(table, path, [str(p) for p, _ in found], chosen, measured.tolist(), fit, device_s)


def _refuse_overwriting_measurements(path: Path, space: SearchSpace) -> None:
    """A few-shot table may replace an earlier prediction at `path`, never a measured table."""
    if not path.exists():
        return
    try:
        existing = LatencyTable.load(path, space)
    except LutError:
        existing = None
    if existing is None or existing.prediction is None:
        raise LutError(
            f"{path} already holds a table that was not predicted; a few-shot table would replace its "
            "measurements: choose another --out"
        )


def source_tables(
    space: SearchSpace,
    task: str,
    classes: int,
    sigs: list[BlockSignature],
    device: str,
    path: Path,
    sources: list[str | Path] | None,
) -> list[tuple[Path, LatencyTable]]:
    """The measured tables a few-shot table is predicted from: `sources` (each must fit, else one
    line says why) or every table in `path`'s folder built for `space`, `task` and `classes` on
    another device that has every block of `sigs`."""
    if sources:
        return [(Path(p), _usable(Path(p), space, task, classes, sigs, device, explicit=True)) for p in sources]
    found = []
    for candidate in sorted(path.parent.glob(f"*-{space.name}.parquet")):
        if candidate.resolve() == path.resolve() or not sidecar_path(candidate).is_file():
            continue
        table = _usable(candidate, space, task, classes, sigs, device, explicit=False)
        if table is not None:
            found.append((candidate, table))
    if not found:
        raise LutError(
            f"--few-shot predicts from tables of other devices, and {path.parent} has none measured for space "
            f"'{space.name}' with the {task} head ({classes} classes) at these resolutions: profile another device "
            "first (`hwnas profile --device cpu`) or name tables with --source"
        )
    return found


def _usable(
    path: Path, space: SearchSpace, task: str, classes: int, sigs: list[BlockSignature], device: str, *, explicit: bool
) -> LatencyTable | None:
    """The table at `path` if a few-shot table can learn from it; else None, or (`explicit`) an error."""
    try:
        table = LatencyTable.load(path, space)
    except LutError:
        if explicit:
            raise
        return None
    why = None
    if table.prediction is not None:
        why = "it is itself a prediction"
    elif table.meta["device"].get("name") == device:
        why = f"it is a table of '{device}' itself"
    elif table.meta["task"] != task or table.classes != classes:
        why = f"it was built for the {table.meta['task']} head with {table.classes} classes, not {task} with {classes}"
    elif table.missing(sigs):
        why = f"it lacks {len(table.missing(sigs))} of the {len(set(sigs))} blocks at these resolutions"
    if why is not None and explicit:
        raise LutError(f"--source {path} cannot be learnt from: {why}")
    return None if why is not None else table


POOL_STREAM = 1_000_003  # added to the seed: the pool is not the subnets `lut validate --seed S` draws


def candidate_archs(space: SearchSpace, resolutions: list[tuple[int, int]], seed: int) -> list[Arch]:
    """`POOL` distinct subnets shared between `resolutions`: each one's smallest and largest, then
    random ones from a stream of their own (`POOL_STREAM`)."""
    from hwnas.hardware.validation import validation_archs

    return validation_archs(space, POOL, seed + POOL_STREAM, resolutions)


def _predicted_table(
    spec: Device,
    space: SearchSpace,
    task: str,
    classes: int,
    resolutions: list[tuple[int, int]],
    sources: list[LatencyTable],
    sigs: list[BlockSignature],
    fit: Fit,
    measurer: Measurer,
    protocol: Protocol | None,
) -> LatencyTable:
    """The table whose raw sums are `fit`'s prediction (module docstring): a row per block."""
    weights = np.asarray(fit.weights)
    overhead_ms = float(weights @ [t.overhead_ms for t in sources] + fit.intercept_ms)
    table = LatencyTable.new(
        device={"name": spec.name, "backend": spec.backend, **spec.options()},
        versions=measurer.versions(),
        space=space,
        task=task,
        resolutions=resolutions,
        overhead=_timing(overhead_ms),
        protocol=(protocol or Protocol()).to_dict(),
        classes=classes,
    )
    table.meta["host"] = measurer.host()
    table.meta["measured_by"] = measurer.where
    costs = [t.block_ms() for t in sources]
    for sig in dict.fromkeys(sigs):
        block = sum(w * (c[sig.key] - t.overhead_ms) for w, c, t in zip(weights, costs, sources, strict=True))
        table.record(sig, _timing(float(block) + overhead_ms))
    return table


def _timing(ms: float) -> Timing:
    """A predicted figure in a table row: every statistic that value, no calls timed."""
    return Timing(median_ms=ms, p90_ms=ms, min_ms=ms, mean_ms=ms, cv=0.0, n=0, attempts=0)
