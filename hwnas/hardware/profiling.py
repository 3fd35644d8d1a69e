"""Building a latency table on a device (`hwnas profile`).

`profile` measures every distinct block signature of a space at the chosen resolutions, one
`SignatureModel` per row, in several interleaved rounds; it writes the table atomically at least
once a second and after every round, and a rerun after an interruption measures only the rounds
still missing. With `energy`, each block's energy per call follows (`profile_energy`).
"""

from __future__ import annotations

import time
from pathlib import Path

from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.device import Device
from hwnas.hardware.energy import EnergyMeter, choose_meter, measure_inference_energy, require_power
from hwnas.hardware.measurer import DEFAULT_STATISTIC, LocalMeasurer, Measurer, Progress, no_progress
from hwnas.hardware.table import LatencyTable, LutError, default_path
from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs
from hwnas.space import SearchSpace
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
