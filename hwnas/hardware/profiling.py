"""Building a latency table on a device (`hwnas profile`).

`profile` measures every distinct block signature of a space at the chosen resolutions, one
`SignatureModel` per row, in several interleaved rounds; it writes the table atomically at least
once a second and after every round, and a rerun after an interruption measures only the rounds
still missing. With `energy`, each block's energy per call follows (`profile_energy`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.files import writable_file
from hwnas.hardware.agent.client import measurer_for
from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.device import Device, load_device
from hwnas.hardware.doctor import SENTINEL, MachineCheck, Watch, check_before_measuring, require_readable_state
from hwnas.hardware.energy import EnergyMeter, choose_meter, measure_inference_energy, require_power
from hwnas.hardware.measurer import DEFAULT_STATISTIC, LocalMeasurer, Measurer, Progress, no_progress
from hwnas.hardware.precision import Precision
from hwnas.hardware.table import STATISTICS, LatencyTable, LutError, default_path
from hwnas.hardware.validation import Validation
from hwnas.hardware.validation import validate as validate_table
from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs
from hwnas.space import DEFAULT_SPACE, SearchSpace
from hwnas.space.arch import parse_resolution
from hwnas.space.signature import BlockSignature
from hwnas.space.tasks import base_task, check_task, default_classes, is_segmentation

SAVE_EVERY_S = 1.0
WATCH_CHUNK = 8  # blocks measured between two sentinel timings
MAX_REMEASURE = 3  # a chunk measured again at most this often while the machine stays busy
VALIDATION_SAMPLES = 6  # per resolution after a profile: three fit the line (judged by leave-one-out), three test it
VALIDATION_ROUNDS = 2


def open_or_create(
    path: Path,
    device: Device,
    space: SearchSpace,
    task: str,
    resolutions: list[tuple[int, int]],
    protocol: Protocol,
    statistic: str | None = None,
    measurer: Measurer | None = None,
    classes: int = 1000,
) -> LatencyTable:
    """The table at `path` if it was built for this device, space, task, class count and runtime
    (and `statistic`, where one is asked for); else a new one (`statistic` default
    `DEFAULT_STATISTIC`)."""
    measurer = measurer or LocalMeasurer(device)
    versions = measurer.versions()
    if path.exists():
        table = LatencyTable.load(path, space)
        if table.prediction is not None:
            raise LutError(
                f"cannot resume {path}: it holds a few-shot prediction, not measurements; remove it or choose "
                "another --out to measure every block"
            )
        notes = table.compatibility_warnings(device.options(), versions)
        if table.meta["device"].get("name", device.name) != device.name:
            notes.insert(0, f"it was built for device '{table.meta['device'].get('name')}'")
        if statistic is not None and table.statistic != statistic:
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
        statistic=statistic or DEFAULT_STATISTIC,
        classes=classes,
    )
    table.meta["host"] = measurer.host()
    table.meta["measured_by"] = measurer.where
    return table


@dataclass(frozen=True)
class Profile:
    """What `profile` did: the table (saved at `path`), how many block measurements this call took
    (0: the table already had every block measured as far as asked) and how many it found done."""

    table: LatencyTable
    path: Path
    rounds: int  # the most rounds any row has
    measured: int
    found: int
    validation: Validation | None = None  # the end-to-end check that followed, if one ran
    imprecise: int = 0  # rows whose 95% interval stayed wider than the target (flagged in the table)
    precision: Precision = Precision()


def profile(
    device: str | Path | Device,
    space: str | Path | SearchSpace | None = None,
    *,
    task: str = "saliency",
    classes: int | None = None,
    resolutions: list[str | tuple[int, int]] | None = None,
    out: str | Path | None = None,
    rounds: int | None = None,
    precision: Precision | None = None,
    statistic: str | None = None,
    energy: bool = False,
    validate: bool = True,
    meter: str | EnergyMeter | None = None,
    remote: str | None = None,
    token: str | None = None,
    devices_dir: str | Path | None = None,
    protocol: Protocol | None = None,
    measurer: Measurer | None = None,
    progress: Progress = no_progress,
    on_resume: Callable[[Path, int, int], None] | None = None,
    watch: bool = True,
    strict: bool = False,
    on_check: Callable[[MachineCheck], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Profile:
    """`hwnas profile`: measure every block signature of `space` (a preset, a .toml or a
    `SearchSpace`; default alphanet) on `device` (a spec name, a .toml or a `Device`) in interleaved
    rounds into the table `out` (default `lut/DEVICE-SPACE.parquet`), saving as it goes: by
    `precision` (default `Precision()`: at least 3 rounds, then more for each row whose 95% interval
    is wider than +-3%, up to 6), or exactly `rounds` rounds where only that is given. Rows still
    imprecise at the cap are flagged in the table (`precise`) and counted in `Profile.imprecise`.
    With `energy`, each block's energy per call follows (`profile_energy`, with `meter`: a meter
    kind or an `EnergyMeter`). `classes` is the
    width of a segmentation head's logits (default Cityscapes' 19) or a classifier's (default
    1000); `resolutions` ("256x192" or pairs) default to all of the space's. `remote` measures on
    `hwnas agent` at that URL.
    With `validate` (the default), a short end-to-end check follows (`validate_table`: subnets
    measured whole, `VALIDATION_SAMPLES` per resolution in `VALIDATION_ROUNDS` rounds), which stores
    each resolution's calibration line where leave-one-out on its fitting half says it lowers the
    error (`hwnas.hardware.validation`); it is skipped when
    nothing new was measured and the table was validated before.

    `statistic` is what the rows predict with: a resumed table's own by default, `DEFAULT_STATISTIC`
    for a new one.

    Every input is checked before any measurement (one `HwnasError`). Round r measures each
    signature that has r rounds or fewer and still wants one (`_measure_blocks`), so a rerun after
    an interruption continues where the last one stopped (`on_resume(path, done, total)` is told)
    and never repeats a finished one.

    With `watch` (the default), the machine is checked first (`check_machine`, told to `on_check`
    and stored in the sidecar as `machine_check`) and the sentinel is timed after every
    `WATCH_CHUNK` blocks (`Watch`: busy stretches measured again, waits told to `on_wait`, its trace
    stored as `watch`). `strict` stops with `NoisyMachine` where the check finds the machine noisy
    (before anything is written) or it stays busy while measuring; it needs a machine whose state
    can be read (not an agent's).
    """
    precision = precision or (Precision() if rounds is None else Precision.fixed(rounds))
    spec, sp, chosen, path = checked_inputs(
        device, space, task=task, classes=classes, resolutions=resolutions, out=out, rounds=precision.min_rounds,
        statistic=statistic, energy=energy, remote=remote, measurer=measurer, devices_dir=devices_dir,
    )  # fmt: skip
    if strict:
        require_readable_state(remote or (measurer.where if measurer is not None else "local"))
    measurer = measurer or measurer_for(spec, remote, token)
    if energy:
        meter = meter if isinstance(meter, EnergyMeter) else choose_meter(spec, kind=meter, region=spec.region)
        if not meter.source.startswith("measured"):
            require_power(spec)  # before any measurement: the estimate needs the spec's power model
    protocol = protocol or Protocol()
    classes = classes or default_classes(task)
    sigs = list(dict.fromkeys(sp.all_block_signatures(chosen, task, classes)))
    table = open_or_create(path, spec, sp, task, chosen, protocol, statistic, measurer, classes)  # writes nothing
    table.set_timing_precision(precision)
    pending = any(precision.wants_round(table.round_values(s)) for s in sigs)
    machine = None
    if (watch or strict) and pending:  # a finished table is not measured, so the machine is not checked
        machine = check_before_measuring(measurer, strict=strict, on_check=on_check, protocol=protocol)
    table.meta["rounds"] = max(precision.min_rounds, table.meta.get("rounds", 0))
    table.save(path)
    found = sum(table.rounds_done(s) for s in sigs)
    if on_resume is not None and found and pending:
        on_resume(path, found, sum(max(table.rounds_done(s), precision.min_rounds) for s in sigs))
    watcher = None
    if machine is not None:
        table.meta["machine_check"] = machine.to_dict()
        watcher = Watch(measurer, protocol=protocol, strict=strict, on_wait=on_wait or (lambda message: None))
        watcher.seed(machine.windows_ms)
    try:
        done = _measure_blocks(measurer, table, sigs, path, precision, protocol, progress, watcher)
    finally:
        if watcher is not None:
            table.meta["watch"] = watcher.to_dict()
            table.save(path)
    if energy:
        profile_energy(spec, table, sigs, path, meter=meter, progress=progress)
    checked = None
    if validate and (done > 0 or "validation" not in table.meta):
        samples = VALIDATION_SAMPLES * len(table.meta["resolutions"])
        checked = validate_table(
            spec, table, samples=samples, rounds=VALIDATION_ROUNDS, protocol=protocol, measurer=measurer,
            strict=strict, on_check=on_check, machine=machine,  # the profile's own check, watched since
            progress=lambda d, n, label: progress(d, n, f"whole subnets: {label}"),
        )  # fmt: skip
        table.save(path)
        checked = replace(checked, table_path=str(path))
    return Profile(table, path, max(table.rounds_done(s) for s in sigs), done, found, checked,
                   imprecise=len(table.imprecise()), precision=precision)  # fmt: skip


def _measure_blocks(
    measurer: Measurer,
    table: LatencyTable,
    sigs: list[BlockSignature],
    path: Path,
    precision: Precision,
    protocol: Protocol,
    progress: Progress,
    watch: Watch | None,
) -> int:
    """Round r measures each signature that has r rounds or fewer and still wants one
    (`Precision.wants_round`: fewer than the minimum, or its interval still wider than the target);
    no round starts after `precision.max_s` once every row has its minimum. Blocks go `WATCH_CHUNK`
    at a time, each chunk followed by the sentinel (`Watch`: a chunk measured while the machine was
    busy is measured again). Saves at least once a second and after each round; returns how many
    block measurements it kept."""
    started = last_save = time.monotonic()
    done = 0
    total = sum(max(0, precision.min_rounds - table.rounds_done(s)) for s in sigs)  # grows by each extra round
    for r in range(precision.max_rounds):
        todo = [s for s in sigs if table.rounds_done(s) <= r and precision.wants_round(table.round_values(s))]
        if not todo:
            continue
        if precision.max_s is not None and time.monotonic() - started > precision.max_s and r >= precision.min_rounds:
            break
        extra = ""
        if r >= precision.min_rounds:
            total += len(todo)
            extra = f" ({len(todo)} not within +-{precision.target * 100:g}%)"
        for start in range(0, len(todo), WATCH_CHUNK):
            chunk = todo[start : start + WATCH_CHUNK]
            for sig, timing in zip(chunk, _watched(measurer, chunk, protocol, watch), strict=True):
                table.record(sig, timing)
            done += len(chunk)
            if time.monotonic() - last_save > SAVE_EVERY_S:
                table.save(path)
                last_save = time.monotonic()
            progress(done, total, f"round {r + 1}{extra} {chunk[-1].key}")
        table.save(path)
    return done


def _watched(measurer: Measurer, chunk: list[BlockSignature], protocol: Protocol, watch: Watch | None) -> list:
    """The chunk's timings, measured again (after the machine settles) while the sentinel after it
    says the machine was busy, `MAX_REMEASURE` times at most."""
    if watch is None:
        return [timing for _, timing in measurer.blocks(chunk, protocol)]
    for attempt in range(MAX_REMEASURE + 1):
        *timings, sentinel = [timing for _, timing in measurer.blocks([*chunk, SENTINEL], protocol)]
        if watch.keep(sentinel.median_ms) or attempt == MAX_REMEASURE:
            break  # the last attempt is kept whatever the sentinel says: the rows' intervals tell
        watch.settle()
    return timings


def checked_inputs(
    device, space, *, task, classes, resolutions, out, rounds, statistic, energy, remote, measurer, devices_dir
) -> tuple[Device, SearchSpace, list[tuple[int, int]], Path]:
    """`profile`'s inputs (and a few-shot profile's) checked, before any measurement: (spec, space,
    resolutions, table path)."""
    check_task(task)
    spec = device if isinstance(device, Device) else load_device(device, devices_dir)
    sp = space if isinstance(space, SearchSpace) else SearchSpace.load(space or DEFAULT_SPACE)
    chosen = (
        list(sp.resolutions) if not resolutions else [sp.check_resolution(parse_resolution(r)) for r in resolutions]
    )
    if rounds < 1:
        raise LutError(f"--rounds must be at least 1, got {rounds}")
    if classes is not None and (classes < 1 or base_task(task) not in ("classification", "segmentation")):
        raise LutError(
            f"--classes is a positive class count for the segmentation or classification head; got {classes} for {task}"
        )
    if statistic is not None and statistic not in STATISTICS:
        raise LutError(f"unknown --statistic '{statistic}'; allowed: {', '.join(STATISTICS)}")
    if energy and (remote is not None or (measurer is not None and measurer.where != "local")):
        raise LutError("--energy with --remote is not supported yet: profile energy on the device itself")
    return spec, sp, chosen, writable_file(out or default_path(spec.name, sp.name), what="latency table")


@dataclass(frozen=True)
class DeviceProfile:
    """One device's part of `profile_devices`: its `Profile`, or the error that stopped it."""

    device: str
    remote: str
    profile: Profile | None
    error: str | None = None


def profile_devices(
    devices: list[str],
    remotes: list[str],
    space: str | Path | SearchSpace | None = None,
    *,
    token: str | None = None,
    progress_for: Callable[[str], Progress] | None = None,
    on_resume: Callable[[Path, int, int], None] | None = None,
    devices_dir: str | Path | None = None,
    **options,
) -> list[DeviceProfile]:
    """`hwnas profile` of several devices at once, each on its own agent (`remotes[i]` measures
    `devices[i]`), concurrently: one thread per device, each writing its own table
    (`lut/DEVICE-SPACE.parquet`) as `profile` does, so each resumes on its own. `options` are
    `profile`'s (task, classes, resolutions, rounds, statistic, validate, protocol). Every input of
    every device is checked before any is measured; then a device that fails (its agent gone for
    good) is its row's `error` and the others finish. `progress_for(device)` gives each its own
    progress callback."""
    from concurrent.futures import ThreadPoolExecutor

    if len(devices) < 2:
        raise LutError("profile_devices is for several devices; one is `profile`")
    if len(remotes) != len(devices):
        raise LutError(
            f"{len(devices)} --device(s) need as many --remote agents, one each in order (got {len(remotes)}): "
            "devices measured on this host would time each other; profile those one at a time"
        )
    if options.get("out") is not None:
        raise LutError("--out names one table; several devices each write lut/DEVICE-SPACE.parquet")
    for what, values in (("--device", devices), ("--remote", remotes)):
        if len(set(values)) != len(values):
            raise LutError(f"each {what} once: {', '.join(values)}")
    if options.get("energy"):
        raise LutError("--energy with --remote is not supported yet: profile energy on the device itself")
    rounds = options.get("rounds") or (options.get("precision") or Precision()).min_rounds
    checks = {k: options.get(k) for k in ("classes", "resolutions")}
    measurers = []
    for device, remote in zip(devices, remotes, strict=True):
        spec, *_ = checked_inputs(
            device, space, task=options.get("task", "saliency"), **checks, out=None, rounds=rounds,
            statistic=options.get("statistic"), energy=False, remote=remote, measurer=None,
            devices_dir=devices_dir,
        )  # fmt: skip
        measurers.append(measurer_for(spec, remote, token))  # the agent reached, the device there, the token taken

    def one(device: str, remote: str, measurer: Measurer) -> DeviceProfile:
        try:
            done = profile(
                device, space, measurer=measurer, devices_dir=devices_dir, on_resume=on_resume,
                progress=progress_for(device) if progress_for else no_progress, **options,
            )  # fmt: skip
        except HwnasError as error:
            return DeviceProfile(device, remote, None, str(error))
        return DeviceProfile(device, remote, done)

    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="hwnas-profile") as pool:
        return list(pool.map(one, devices, remotes, measurers))


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
