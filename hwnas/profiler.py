"""Building and validating latency tables on a device (`hwnas profile`, `hwnas lut validate`).

`profile` measures every distinct block signature of a space at the chosen resolutions, one
`SignatureModel` per row, in several interleaved rounds; it writes the table atomically at least
once a second and after every round, and a rerun after an interruption measures only the rounds
still missing. `validate` measures whole subnets end to end,
compares them with the table (MAPE, share within 5% / 10%, Kendall tau, Spearman rho), fits the
calibration on one half and reports it on the held-out half (MoSegNAS Fig. 4 / 11 report the same
rank correlation for their table). It also reports how well the measurement agrees with itself:
the held-out subnets' figures from the first half of the rounds against those from the second half.
No table can rank subnets better than two measurements of the same subnets rank each other, so on
a noisy machine that figure, not the table, bounds the Kendall tau.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from hwnas.backends import Protocol, get_backend
from hwnas.devices import Device
from hwnas.energy import EnergyMeter, choose_meter, measure_inference_energy, require_power
from hwnas.lut import Calibration, LatencyTable, LutError, default_path, now, resolution_key
from hwnas.measurer import DEFAULT_STATISTIC, LocalMeasurer, Measurer, Progress, aggregate, no_progress
from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature
from hwnas.space.tasks import default_classes, is_segmentation

SAVE_EVERY_S = 1.0


def open_or_create(
    path: Path,
    device: Device,
    space: SearchSpace,
    task: str,
    resolutions: list[tuple[int, int]],
    protocol: Protocol,
    statistic: str = "median",
    measurer: Measurer | None = None,
    classes: int = 1000,
) -> LatencyTable:
    """The table at `path` if it was built for this device, space, task, class count and runtime;
    else a new one."""
    measurer = measurer or LocalMeasurer(device)
    versions = measurer.versions()
    if path.exists():
        table = LatencyTable.load(path, space)
        notes = table.compatibility_warnings(device.options(), versions)
        if table.meta["device"].get("name", device.name) != device.name:
            notes.insert(0, f"it was built for device '{table.meta['device'].get('name')}'")
        if table.statistic != statistic:
            notes.insert(0, f"it predicts with the {table.statistic} statistic, not {statistic}")
        if table.meta["task"] != task:
            notes.insert(0, f"it was built for the {table.meta['task']} head")
        elif is_segmentation(task) and table.classes != classes:
            notes.insert(0, f"it was built for {table.classes} classes, not {classes}")
        if notes:
            raise LutError(f"cannot resume {path}: {notes[0]}; remove it or choose another --out")
        table.meta["resolutions"] = sorted({tuple(r) for r in table.meta["resolutions"]} | set(resolutions))
        return table
    device_meta = {"name": device.name, "backend": device.backend, **device.options()}
    table = LatencyTable.new(
        device=device_meta,
        versions=versions,
        space=space,
        task=task,
        resolutions=resolutions,
        overhead=measurer.overhead(protocol),
        protocol=protocol.to_dict(),
        statistic=statistic,
        classes=classes,
    )
    table.meta["host"] = measurer.host()
    table.meta["measured_by"] = measurer.where
    return table


def profile(
    device: Device,
    space: SearchSpace,
    *,
    task: str = "saliency",
    resolutions: list[tuple[int, int]] | None = None,
    out: str | Path | None = None,
    rounds: int = 4,
    statistic: str = DEFAULT_STATISTIC,
    protocol: Protocol | None = None,
    progress: Progress = no_progress,
    energy: bool = False,
    meter: EnergyMeter | None = None,
    measurer: Measurer | None = None,
    classes: int | None = None,
) -> LatencyTable:
    """Measure every block signature in `rounds` interleaved passes, saving as it goes; with
    `energy`, then add each block's energy per call (see `profile_energy`). `classes` is the width
    of a segmentation head's logits (default Cityscapes' 19) or a classifier's (default 1000).

    Round r measures each signature that has fewer than r+1 rounds, so a rerun after an
    interruption continues where the last one stopped and never repeats a finished measurement.
    """
    if rounds < 1:
        raise LutError(f"--rounds must be at least 1, got {rounds}")
    if energy and measurer is not None and measurer.where != "local":
        raise LutError("--energy with --remote is not supported yet: profile energy on the device itself")
    measurer = measurer or LocalMeasurer(device)
    if energy:
        meter = meter or choose_meter(device, region=device.region)
        if not meter.source.startswith("measured"):
            require_power(device)  # before any measurement: the estimate needs the spec's power model
    protocol = protocol or Protocol()
    resolutions = list(space.resolutions) if resolutions is None else [tuple(r) for r in resolutions]
    classes = classes or default_classes(task)
    sigs = space.all_block_signatures(resolutions, task, classes)
    path = Path(out) if out is not None else default_path(device.name, space.name)
    table = open_or_create(path, device, space, task, resolutions, protocol, statistic, measurer, classes)
    table.meta["rounds"] = max(rounds, table.meta.get("rounds", 0))
    table.save(path)
    total = len(sigs) * rounds
    done = sum(min(table.rounds_done(s), rounds) for s in sigs)
    progress(done, total, "")
    last_save = time.monotonic()
    for r in range(rounds):
        todo = [sig for sig in sigs if table.rounds_done(sig) <= r]
        for sig, timing in measurer.blocks(todo, protocol):
            table.record(sig, timing)
            done += 1
            if time.monotonic() - last_save > SAVE_EVERY_S:
                table.save(path)
                last_save = time.monotonic()
            progress(done, total, f"round {r + 1}/{rounds} {sig.key}")
        table.save(path)
    if energy:
        profile_energy(device, table, sigs, path, meter=meter, progress=progress)
    return table


def profile_energy(
    device: Device,
    table: LatencyTable,
    sigs: list[BlockSignature],
    path: Path,
    *,
    meter: EnergyMeter | None = None,
    progress: Progress = no_progress,
) -> None:
    """Fill the energy column: measured per block where the meter measures (NVML, RAPL: a window of
    calls per block, idle power subtracted), else the block's latency x the spec's active watts,
    labelled `estimated-spec`. A row gets its energy only after its window completed, and the table
    is saved after each, so a meter failing mid-window leaves no partial row."""
    meter = meter or choose_meter(device, region=device.region)
    measured = meter.source.startswith("measured")
    if not measured:
        watts = require_power(device).active_w
        table.meta["energy"] = {"source": "estimated-spec", "overhead_mj": table.overhead_ms * watts, "watts": watts}
        for sig in table.energy_missing(sigs):
            table.record_energy(
                sig, float(table.rows_by_key(sig.key)[f"{table.statistic}_ms"]) * watts, "estimated-spec"
            )
        table.save(path)
        return
    backend = get_backend(device)
    if table.meta.get("energy", {}).get("source") != meter.source:
        overhead = backend.compile(IdentityModel(), [(device.batch, 8, 8, 8)])
        cost = measure_inference_energy(overhead.bind(overhead.example_inputs()), meter, latency_ms=table.overhead_ms)
        table.meta["energy"] = {"source": meter.source, "overhead_mj": cost.joules_per_inference * 1000}
    todo = table.energy_missing(sigs)
    for i, sig in enumerate(todo):
        runnable = backend.compile(SignatureModel(sig).eval(), signature_inputs(sig, device.batch))
        latency = float(table.rows_by_key(sig.key)[f"{table.statistic}_ms"])
        cost = measure_inference_energy(runnable.bind(runnable.example_inputs()), meter, latency_ms=latency)
        table.record_energy(sig, cost.joules_per_inference * 1000, meter.source)
        table.save(path)
        progress(i + 1, len(todo), f"energy {sig.key}")


# ---- validation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    """How well predictions match measurements over a set of subnets."""

    n: int
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float
    spearman_rho: float

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> Fidelity:
        error = np.abs(predicted - measured) / measured
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


@dataclass(frozen=True)
class ResolutionFit:
    """The calibration line of one resolution, fitted on its calibration half and judged on its
    held-out half; stored in the table only if it lowers that half's MAPE (`applied`)."""

    resolution: str
    calibration: Calibration
    before: Fidelity
    after: Fidelity
    applied: bool


@dataclass(frozen=True)
class Validation:
    """End-to-end check of a table: raw figures on all subnets, before/after calibration on held-out
    ones (all resolutions together, each through its own line), and each resolution's fit."""

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
    return Arch(tuple(resolution), arch.stem, arch.stages, arch.last)


def validate(
    device: Device,
    table: LatencyTable,
    *,
    samples: int = 20,
    seed: int = 0,
    resolution: tuple[int, int] | None = None,
    rounds: int = 4,
    protocol: Protocol | None = None,
    progress: Progress = no_progress,
    measurer: Measurer | None = None,
) -> Validation:
    """Measure `samples` subnets end to end in `rounds` interleaved rounds (aggregated like the
    table's rows), at `resolution` or shared evenly between every resolution the table profiled;
    at each resolution fit a line on half of its subnets and report it on the other half. A line is
    stored only if it lowers its resolution's held-out MAPE; otherwise that resolution predicts raw
    block sums, since a calibration that makes held-out predictions worse would skew every later
    latency. Lines of resolutions not validated now stay as they were."""
    if rounds < 1:
        raise LutError(f"--rounds must be at least 1, got {rounds}")
    space, task = table.space, table.meta["task"]
    targets = [tuple(resolution)] if resolution is not None else [tuple(r) for r in table.meta["resolutions"]]
    if samples < 4 * len(targets):
        raise LutError(
            f"--samples must be at least 4 per resolution (two to fit each line, two to test it): "
            f"{len(targets)} resolution(s) need {4 * len(targets)}, got {samples}"
        )
    measurer = measurer or LocalMeasurer(device)
    archs = validation_archs(space, samples, seed, targets)
    raw = np.array([table.raw_ms(a) for a in archs])  # raises early, naming missing signatures
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
    measured = aggregate(per_round, table.statistic)
    keys = np.array([resolution_key(a.resolution) for a in archs])
    holdout, calibrated, fits = np.zeros(len(archs), dtype=bool), raw.copy(), []
    split = np.random.default_rng(seed + 1)
    for target in targets:
        key = resolution_key(target)
        index = np.flatnonzero(keys == key)
        holdout[index] = split.permutation(len(index)) % 2 == 1
        fit_on, held = index[~holdout[index]], index[holdout[index]]
        line = Calibration.fit(raw[fit_on], measured[fit_on])
        calibrated[index] = line.apply(raw[index])
        before, after = Fidelity.of(raw[held], measured[held]), Fidelity.of(calibrated[held], measured[held])
        fits.append(ResolutionFit(key, line, before, after, applied=after.mape < before.mape))
        table.set_calibration(target, line if fits[-1].applied else None)
    table.meta["validation"] = {
        "date": now(), "samples": len(archs), "seed": seed, "rounds": rounds,
        "calibration_applied": {fit.resolution: fit.applied for fit in fits},
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
