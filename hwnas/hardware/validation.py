"""Checking a latency table against whole subnets (`hwnas lut validate`).

`validate` measures whole subnets end to end, compares them with the table (MAPE, share within 5% /
10% with its 95% interval, Kendall tau, Spearman rho), fits the calibration on one half and reports
it on the held-out half (MoSegNAS Fig. 4 / 11 report the same rank correlation for their table).
The protocol keeps the held-out half out of every decision (`fitting_split`, `ResolutionFit`): the
smallest and largest subnets by block sum are always in the fitting half (a line is not extrapolated
to them), whether the line is stored is judged by leave-one-out on the fitting half, and the
held-out figures are those of what is stored. It also reports how
well the measurement agrees with itself: the held-out subnets' figures from the first half of the
rounds against those from the second half. No table can rank subnets better than two measurements
of the same subnets rank each other, so on a noisy machine that figure, not the table, bounds the
Kendall tau.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from hwnas.files import atomic_write_json, writable_file
from hwnas.hardware.agent.client import measurer_for
from hwnas.hardware.backends import Protocol
from hwnas.hardware.device import Device, load_device
from hwnas.hardware.doctor import MachineCheck, check_before_measuring, require_readable_state
from hwnas.hardware.measurer import Measurer, Progress, aggregate, no_progress
from hwnas.hardware.precision import log_standard_error
from hwnas.hardware.table import Calibration, LatencyTable, LutError, default_path, now, resolution_key, sidecar_path
from hwnas.space import DEFAULT_SPACE, Arch, SearchSpace
from hwnas.space.arch import parse_resolution


def relative_error(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """|predicted - measured| / measured, per subnet (x 100 and averaged: the MAPE)."""
    return np.abs(np.asarray(predicted) - measured) / measured


@dataclass(frozen=True)
class Fidelity:
    """How well predictions match measurements over a set of subnets."""

    n: int
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float
    spearman_rho: float

    def interval(self, share: float) -> tuple[float, float]:
        """The 95% (Wilson) interval of a share of these `n` subnets, e.g. `within_10`."""
        return share_interval(round(share * self.n), self.n)

    def share_text(self, share: float) -> str:
        """A share with its count and 95% interval, e.g. `97% (31 of 32, 84-99%)`."""
        low, high = self.interval(share)
        return f"{share:.0%} ({round(share * self.n)} of {self.n}, {low * 100:.0f}-{high:.0%})"

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> Fidelity:
        error = relative_error(predicted, measured)
        tau = stats.kendalltau(predicted, measured).statistic
        rho = stats.spearmanr(predicted, measured).statistic
        return cls(
            len(measured),
            float(error.mean() * 100),
            float((error <= 0.05).mean()),
            float((error <= 0.10).mean()),
            float(tau),
            float(rho),
        )


def share_interval(count: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of `count` successes in `n` (scipy's `binomtest`)."""
    if n == 0:
        return (0.0, 1.0)
    found = stats.binomtest(count, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(found.low), float(found.high)


MIN_DECIDING = 3  # fitting-half subnets to judge a line by leave-one-out (each fit needs two)
MIN_ERROR = 0.001  # a measurement's relative standard error is taken as at least 0.1%


def fitting_split(raw: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fitting, held-out) positions of subnets with block sums `raw`: the smallest and largest in the
    fitting half, the others shuffled so the held-out half has len(raw) // 2."""
    ends = list(dict.fromkeys([int(np.argmin(raw)), int(np.argmax(raw))]))
    rest = rng.permutation([i for i in range(len(raw)) if i not in ends])
    held = np.sort(rest[: len(raw) // 2])
    return np.sort(np.setdiff1d(np.arange(len(raw)), held)), held


def measurement_error(per_round: np.ndarray) -> np.ndarray:
    """Each subnet's relative standard error from its rounds (`log_standard_error`; rounds that
    agree exactly, or one round, get the floor `MIN_ERROR`'s and the median's, as they cannot say)."""
    se = np.array([log_standard_error(per_round[:, i]) for i in range(per_round.shape[1])])
    finite = se[np.isfinite(se) & (se > 0)]
    fill = float(np.median(finite)) if len(finite) else MIN_ERROR
    return np.maximum(np.where(np.isfinite(se) & (se > 0), se, fill), MIN_ERROR)


def loo_predictions(raw: np.ndarray, measured: np.ndarray, error: np.ndarray | None = None) -> np.ndarray:
    """Each subnet predicted by a line fitted on the others (its block sum through it); with
    `error` (ms), each line weighted by the others' measurement errors."""
    out = []
    for i in range(len(raw)):
        rest = None if error is None else np.delete(error, i)
        out.append(Calibration.fit(np.delete(raw, i), np.delete(measured, i), rest).apply(raw[i]))
    return np.array(out)


def leave_one_out(raw: np.ndarray, measured: np.ndarray, error: np.ndarray | None = None) -> tuple[float, float] | None:
    """(MAPE of the raw sums, MAPE of a line fitted on the others) over the fitting half, each
    subnet predicted by a line it was not fitted on; None with fewer than `MIN_DECIDING` subnets."""
    if len(raw) < MIN_DECIDING:
        return None
    guesses = loo_predictions(raw, measured, error)
    return float(relative_error(raw, measured).mean() * 100), float(relative_error(guesses, measured).mean() * 100)


def scatter(raw: np.ndarray, measured: np.ndarray, applied: bool, error: np.ndarray | None = None) -> float:
    """How far what is stored misses whole subnets of the fitting half, on the log scale (root mean
    square of log(predicted / measured)): leave-one-out predictions where a line is stored, raw sums
    where not. Predictions' intervals carry it (`LatencyTable.predict_interval`)."""
    predicted = loo_predictions(raw, measured, error) if applied else raw
    ratio = np.asarray(predicted) / measured
    return float(np.sqrt(np.mean(np.log(np.clip(ratio, 1e-3, None)) ** 2)))  # a non-positive guess: far off


@dataclass(frozen=True)
class ResolutionFit:
    """The calibration line of one resolution, fitted on its fitting half, each subnet weighted by
    the inverse of its measurement's standard error (from its rounds: issue 48). It is stored only if
    its slope is positive (a line that does not rise with the block sum ranks the subnets wrongly,
    however it lowers the error of near-equal ones) and, by leave-one-out on the fitting half
    (`decided_on`: MAPE of the raw sums, MAPE with a line), it lowers the error by more than the
    measurements' own 95% error (`noise_pct`, the median over the fitting half; within it the data
    are `too_noisy` to decide) (`applied`); the held-out half decides nothing. `before` / `after`:
    the held-out figures of the raw sums and of what is stored (the same when no line is)."""

    resolution: str
    calibration: Calibration
    before: Fidelity
    after: Fidelity
    applied: bool
    decided_on: tuple[float, float] | None = None
    noise_pct: float = 0.0  # the fitting half's measurements' own 95% error (%, median): what a gain must beat

    @property
    def too_noisy(self) -> bool:
        """Whether the line's leave-one-out gain is within the measurements' own error."""
        if self.decided_on is None:
            return False
        raw, line = self.decided_on
        return line < raw and raw - line <= self.noise_pct

    @property
    def refusal(self) -> str:
        """Why the line is not stored ("" when it is)."""
        if self.applied:
            return ""
        if self.calibration.slope <= 0:
            return f"its slope {self.calibration.slope:.4f} is not positive: it would not rank the subnets by cost"
        if self.decided_on is None:
            return f"the fitting half is too small to judge a line by leave-one-out (at least {MIN_DECIDING})"
        raw, line = self.decided_on
        if self.too_noisy:
            return (
                f"the measurements are too noisy to decide: by leave-one-out the line gains {raw - line:.1f} points "
                f"({line:.1f}% with it, {raw:.1f}% without), within their own 95% error of {self.noise_pct:.1f}%; "
                "measure more --rounds on a quieter machine (`hwnas doctor`)"
            )
        return (
            f"by leave-one-out on the fitting half it does not lower the error ({line:.1f}% with it, {raw:.1f}% "
            "without)"
        )


@dataclass(frozen=True)
class Validation:
    """End-to-end check of a table: raw figures on all subnets; on held-out ones raw and as stored
    (through each resolution's line, where one is stored), all resolutions together; each resolution's fit."""

    archs: list[str]
    resolutions: list[str]
    measured_ms: list[float]
    raw_ms: list[float]
    calibrated_ms: list[float]
    holdout: list[bool]
    all_raw: Fidelity
    holdout_before: Fidelity
    holdout_after: Fidelity
    fits: list[ResolutionFit]
    repeatability: Fidelity | None = None  # held-out: first half of the rounds vs the second half
    table_path: str | None = None  # where the table (and its calibration sidecar) was saved
    predicted_from: str | None = None  # a predicted table's provenance (`LatencyTable.provenance`)

    def to_dict(self) -> dict:
        return asdict(self)


def validation_archs(space: SearchSpace, samples: int, seed: int, resolutions: list[tuple[int, int]]) -> list[Arch]:
    """`samples` distinct subnets shared evenly between `resolutions`: at each, the min, the max
    and random ones."""
    rng = np.random.default_rng(seed)
    chosen: list[Arch] = []
    for i, resolution in enumerate(resolutions):
        quota = samples // len(resolutions) + (i < samples % len(resolutions))
        found: dict[Arch, None] = {_at(arch, resolution): None for arch in [space.min(), space.max()]}
        attempts = 0
        while len(found) < quota and attempts < 100 * quota:
            found[_at(space.sample(rng), resolution)] = None
            attempts += 1
        chosen += list(found)[:quota]
    return chosen


def _at(arch: Arch, resolution: tuple[int, int]) -> Arch:
    return replace(arch, resolution=tuple(resolution))


def validate(
    device: str | Path | Device,
    table: str | Path | LatencyTable | None = None,
    *,
    space: str | Path | SearchSpace | None = None,
    samples: int = 20,
    seed: int = 0,
    resolution: str | tuple[int, int] | None = None,
    rounds: int = 4,
    report: str | Path | None = None,
    remote: str | None = None,
    token: str | None = None,
    devices_dir: str | Path | None = None,
    protocol: Protocol | None = None,
    measurer: Measurer | None = None,
    progress: Progress = no_progress,
    warn: Callable[[str], None] | None = None,
    strict: bool = False,
    on_check: Callable[[MachineCheck], None] | None = None,
    machine: MachineCheck | None = None,
) -> Validation:
    """`hwnas lut validate`: measure `samples` subnets end to end in `rounds` interleaved rounds
    (aggregated like the table's rows), at `resolution` or shared evenly between every resolution
    the table profiled; at each resolution fit a line on half of its subnets and report it on the
    other half. A line is stored only if it lowers its resolution's held-out MAPE; otherwise that
    resolution predicts raw block sums, since a calibration that makes held-out predictions worse
    would skew every later latency. Lines of resolutions not validated now stay as they were.

    `table` is a path (default `lut/DEVICE-SPACE.parquet`, `space` default alphanet), saved with its
    lines when done, or a `LatencyTable` the caller saves. `report` is a JSON file for the
    per-subnet figures; `warn` is told where the table's runtime differs from this one's. The
    machine is checked first (`check_before_measuring`, told to `on_check`, kept in the sidecar's
    `validation` record; `machine`, a check just made, stands for it); `strict` stops there where it
    is noisy.
    """
    spec = device if isinstance(device, Device) else load_device(device, devices_dir)
    path = None
    if not isinstance(table, LatencyTable):
        sp = space if isinstance(space, SearchSpace) else SearchSpace.load(space or DEFAULT_SPACE)
        path = Path(table) if table is not None else default_path(spec.name, sp.name)
        table = LatencyTable.load(path, sp)
    table.require_precision(spec.precision, path or "the table")
    if resolution is not None:
        resolution = table.space.check_resolution(parse_resolution(resolution))
    if rounds < 1:
        raise LutError(f"--rounds must be at least 1, got {rounds}")
    targets = _targets(table, resolution)
    if samples < 4 * len(targets):
        raise LutError(
            f"--samples must be at least 4 per resolution (two to fit each line, two to test it): "
            f"{len(targets)} resolution(s) need {4 * len(targets)}, got {samples}"
        )
    if report is not None:
        writable_file(report, what="--report file")
    if path is not None:
        writable_file(sidecar_path(path), what="latency table sidecar")
    if strict:
        require_readable_state(remote or (measurer.where if measurer is not None else "local"))
    measurer = measurer or measurer_for(spec, remote, token)
    if warn is not None:
        for note in table.compatibility_warnings(spec.options(), measurer.versions()):
            warn(note)
    if machine is None:
        machine = check_before_measuring(measurer, strict=strict, on_check=on_check, protocol=protocol)
    result = _validate(table, samples, seed, resolution, rounds, protocol, progress, measurer)
    table.meta["validation"]["machine_check"] = machine.to_dict()
    if path is not None:
        table.save(path)
        result = replace(result, table_path=str(path))
    if report is not None:
        atomic_write_json(report, result.to_dict())
    return result


def _targets(table: LatencyTable, resolution: tuple[int, int] | None) -> list[tuple[int, int]]:
    """The resolutions a validation measures: the one asked for, or every one the table profiled."""
    return [tuple(resolution)] if resolution is not None else [tuple(r) for r in table.meta["resolutions"]]


def _validate(
    table: LatencyTable,
    samples: int,
    seed: int,
    resolution: tuple[int, int] | None,
    rounds: int,
    protocol: Protocol | None,
    progress: Progress,
    measurer: Measurer,
) -> Validation:
    space, task = table.space, table.meta["task"]
    targets = _targets(table, resolution)
    archs = validation_archs(space, samples, seed, targets)
    for arch in archs:
        table.raw_ms(arch)  # raises before any measurement, naming missing signatures
    per_round = measurer.archs(
        space,
        archs,
        task,
        num_classes=table.classes,
        rounds=rounds,
        statistic=table.statistic,
        protocol=protocol or Protocol(),
        progress=progress,
    )
    return judge(table, archs, per_round, seed=seed, resolutions=targets)


def judge(
    table: LatencyTable, archs: list[Arch], per_round: np.ndarray, *, seed: int, resolutions: list[tuple[int, int]]
) -> Validation:
    """The check of `table` on subnets `archs` already measured (`per_round`: rounds x archs, as
    `Measurer.archs` returns them), by `validate`'s protocol at each of `resolutions`; stores each
    resolution's line in `table` where it is kept. Several tables judged on one set of measurements
    are compared on the same subnets and the same split."""
    measured = aggregate(per_round, table.statistic)
    error = measured * measurement_error(per_round)  # each subnet's standard error, ms
    raw = np.array([table.raw_ms(a) for a in archs])
    keys = np.array([resolution_key(a.resolution) for a in archs])
    holdout, calibrated, fits, spreads = np.zeros(len(archs), dtype=bool), raw.copy(), [], {}
    split = np.random.default_rng(seed + 1)
    for target in resolutions:
        key = resolution_key(target)
        index = np.flatnonzero(keys == key)
        fitting, held = (index[p] for p in fitting_split(raw[index], split))
        holdout[held] = True
        line = Calibration.fit(raw[fitting], measured[fitting], error[fitting])
        decided_on = leave_one_out(raw[fitting], measured[fitting], error[fitting])
        noise = float(np.median(1.96 * error[fitting] / measured[fitting]) * 100)
        gain = None if decided_on is None else decided_on[0] - decided_on[1]
        applied = line.slope > 0 and gain is not None and gain > noise
        calibrated[index] = line.apply(raw[index]) if applied else raw[index]  # what the table now predicts
        before, after = Fidelity.of(raw[held], measured[held]), Fidelity.of(calibrated[held], measured[held])
        fits.append(ResolutionFit(key, line, before, after, applied=applied, decided_on=decided_on, noise_pct=noise))
        table.set_calibration(target, line if applied else None)
        spreads[key] = scatter(raw[fitting], measured[fitting], applied, error[fitting])
    table.meta["validation"] = {
        "date": now(), "samples": len(archs), "seed": seed, "rounds": len(per_round),
        "calibration_applied": {fit.resolution: fit.applied for fit in fits},
        "heldout_mape": {fit.resolution: fit.after.mape for fit in fits},
        "heldout_n": {fit.resolution: fit.before.n for fit in fits},
        "spread": spreads,
    }  # fmt: skip
    return Validation(
        archs=[str(a) for a in archs],
        resolutions=keys.tolist(),
        measured_ms=measured.tolist(),
        raw_ms=raw.tolist(),
        calibrated_ms=calibrated.tolist(),
        holdout=holdout.tolist(),
        all_raw=Fidelity.of(raw, measured),
        holdout_before=Fidelity.of(raw[holdout], measured[holdout]),
        holdout_after=Fidelity.of(calibrated[holdout], measured[holdout]),
        fits=fits,
        repeatability=repeatability(per_round[:, holdout], table.statistic),
        predicted_from=table.provenance() if table.prediction is not None else None,
    )


def repeatability(per_round: np.ndarray, statistic: str) -> Fidelity | None:
    """Agreement of two independent measurements of the same subnets: rounds 1..k/2 aggregated
    against rounds k/2+1..k (None with fewer than 2 rounds). Each half has half the rounds, so
    this slightly understates the agreement of two full measurements."""
    half = len(per_round) // 2
    if half == 0:
        return None
    first, second = aggregate(per_round[:half], statistic), aggregate(per_round[half : 2 * half], statistic)
    return Fidelity.of(first, second)
