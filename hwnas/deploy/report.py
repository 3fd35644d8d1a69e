"""`report` (`hwnas report`): the seven computational measures SalNAS reports for a model (Section 4.4, Table 4
/ 5): FLOPs, parameters, model size, carbon emission, power, latency and throughput, each with its
source. Emission and power follow SalNAS's protocol: an energy meter over 200 forward passes of a
batch of 64 (`--passes`, `--batch`); latency is measured with the shared protocol at the device's
batch and set beside the latency table's prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from hwnas.deploy.verify import budget_line, budget_verdict, measured_interval
from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.device import Device, load_device
from hwnas.hardware.energy import (
    SALNAS_BATCH,
    SALNAS_PASSES,
    EnergyError,
    carbon,
    check_region,
    choose_meter,
    measure_inference_energy,
)
from hwnas.hardware.measurer import DEFAULT_STATISTIC, measure_rounds
from hwnas.hardware.table import LatencyTable, default_path
from hwnas.nn.factory import create
from hwnas.space import Arch, SearchSpace
from hwnas.space.tasks import check_task, default_classes


@dataclass(frozen=True)
class Measure:
    name: str
    value: float | None
    unit: str
    source: str


@dataclass
class Report:
    device: str
    arch: str
    task: str
    weights: str
    measures: list[Measure] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def value(self, name: str) -> float | None:
        return next(m.value for m in self.measures if m.name == name)


def artifact_size_mb(device: Device, subnet: nn.Module, shape: tuple[int, ...]) -> tuple[float, str]:
    """MB of the model file the device's runtime loads (ONNX, flatbuffer, ...), or fp32 weights."""
    payload = get_backend(device).prepare(subnet, [shape]).payload
    if isinstance(payload, bytes):
        return len(payload) / 1e6, f"{device.backend} artifact file"
    params = sum(p.numel() for p in subnet.parameters())
    return params * 4 / 1e6, "fp32 weights (params x 4 bytes)"


def report(
    device: str | Path | Device,
    arch: str | Arch,
    *,
    space: str | Path | SearchSpace | None = None,
    supernet: str | Path | None = None,
    task: str = "saliency",
    lut: str | Path | None = None,
    batch: int = SALNAS_BATCH,
    passes: int = SALNAS_PASSES,
    region: str | None = None,
    meter: str | None = None,
    rounds: int = 3,
    devices_dir: str | Path | None = None,
    protocol: Protocol | None = None,
    torch_device: str = "cpu",
) -> Report:
    """`hwnas report`: the seven measures of `arch` (min, max, random, an arch line or .json, or an
    `Arch`) on `device` (which must run here). With `supernet`, the subnet's weights (BN
    recalibrated as the search scored it), task and class count are the checkpoint's, and `space`
    defaults to its space; else the subnet has fresh weights (latency and energy do not depend on
    weight values). `lut` (default `lut/DEVICE-SPACE.parquet` when it exists) adds the table's
    predicted latency. The supernet's subnet is extracted and recalibrated on `torch_device`.
    """
    from hwnas.nn.checkpoint import resolve_space
    from hwnas.train.source import arch_search_context, load_source

    spec = device if isinstance(device, Device) else load_device(device, devices_dir)
    sp = space if isinstance(space, SearchSpace) else resolve_space(space, supernet)
    check_task(task)
    chosen = sp.validate(arch) if isinstance(arch, Arch) else sp.pick(arch)
    path = Path(lut) if lut is not None else default_path(spec.name, sp.name)
    table = LatencyTable.load(path, sp) if lut is not None or path.exists() else None
    if table is not None:
        table.require_precision(spec.precision, path)
    subnet, weights, classes = None, "untrained (latency and energy do not depend on weight values)", None
    if supernet is not None:
        subnet, source = load_source(supernet, chosen, device=torch_device)
        weights, task, classes = f"{supernet} ({source.bn})", source.task, source.num_classes
    budget = ((arch_search_context(arch) or {}).get("latency_budget_ms") or {}).get(spec.name)
    result = subnet_report(
        spec, sp, chosen, task=task, num_classes=classes, subnet=subnet, weights=weights, table=table,
        batch=batch, passes=passes, region=region, meter=meter, rounds=rounds, protocol=protocol, budget_ms=budget,
        table_path=path,
    )  # fmt: skip
    if supernet is not None and spec.precision != "fp32":
        result.measures.append(_accuracy_drop(spec, supernet, chosen, result, torch_device))
    return result


def _accuracy_drop(device: Device, supernet: str | Path, arch: Arch, result: Report, torch_device: str) -> Measure:
    """The task's primary metric lost by the device's quantized model: the export of `arch` for the
    device's format at its precision, scored beside fp32 (`hwnas.deploy.accuracy`); every metric's
    drop goes in `result.details`."""
    import tempfile

    from hwnas.deploy.export import export
    from hwnas.deploy.formats import FORMATS
    from hwnas.train.task import make_task

    fmt = next(n for n in FORMATS.names() if FORMATS.get(n).backend == device.backend)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(supernet, arch, formats=fmt, device=device.source or device.name, out=tmp, rounds=1,
                          precision=device.precision, torch_device=torch_device)  # fmt: skip
    scores = exported.accuracy
    if scores is None or fmt not in scores.scores:
        return Measure("accuracy drop", None, "", f"{fmt} at {device.precision} was not scored here")
    metric = make_task(exported.source.task, exported.source.num_classes).primary
    result.details["accuracy"] = scores.of(fmt)
    return Measure(
        "accuracy drop", scores.drops[fmt][metric], metric,
        f"{fmt} {device.precision} on {scores.images} validation images of {scores.data}: "
        f"{scores.reference[metric]:.4f} fp32, {scores.scores[fmt][metric]:.4f} {device.precision}",
    )  # fmt: skip


def subnet_report(
    device: Device,
    space: SearchSpace,
    arch: Arch,
    *,
    task: str = "saliency",
    num_classes: int | None = None,
    subnet: nn.Module | None = None,
    weights: str = "untrained (latency and energy do not depend on weight values)",
    table: LatencyTable | None = None,
    batch: int = SALNAS_BATCH,
    passes: int = SALNAS_PASSES,
    region: str | None = None,
    meter: str | None = None,
    rounds: int = 3,
    protocol: Protocol | None = None,
    budget_ms: float | None = None,
    table_path: Path | None = None,
) -> Report:
    """Measure `arch` on `device` (which must run here): see the module docstring. `num_classes`
    (classification, segmentation) defaults to the table's, else to `hwnas.space.tasks.default_classes`.
    `budget_ms`, the latency budget the arch was searched under here, is held against the measured
    latency (a note says whether it holds, by how much, and what the table predicted)."""
    if batch < 1 or passes < 1:
        raise EnergyError(f"--batch and --passes must be at least 1, got {batch} and {passes}")
    region = check_region(region or device.region or "USA")
    energy_meter = choose_meter(device, kind=meter, region=region)
    device.require_available()
    classes = num_classes or (table.classes if table is not None else default_classes(task))
    net = (subnet if subnet is not None else create(space, arch=arch, task=task, num_classes=classes)).eval()
    w, h = arch.resolution
    backend = get_backend(device)
    report = Report(device.name, str(arch), task, weights)
    report.measures += [
        Measure("FLOPs", space.flops(arch, task, classes) / 1e9, "G", "analytic (block signatures)"),
        Measure("params", space.params(arch, task, classes) / 1e6, "M", "analytic (block signatures)"),
    ]
    size, size_source = artifact_size_mb(device, net, (device.batch, 3, h, w))
    report.measures.append(Measure("size", size, "MB", size_source))
    single = backend.prepare(net, [(device.batch, 3, h, w)])
    per_round = measure_rounds(backend, [single], rounds=rounds, protocol=protocol)
    measured, low, high = measured_interval(per_round, DEFAULT_STATISTIC)
    how = (
        f"measured ({device.backend}, batch {device.batch}; 95% interval {low:.3f}-{high:.3f} ms over {rounds} rounds)"
    )
    report.measures.append(Measure("latency", measured, "ms", how))
    report.details["latency_interval_ms"] = [low, high]
    predicted, described = None, "no table"
    if table is not None:
        prediction = table.predict_interval(arch)
        predicted = prediction.estimate_ms
        described = table.describe(table_path or "latency table", arch.resolution)
        inside = "inside" if prediction.contains(measured) else "OUTSIDE"
        report.measures.append(
            Measure(
                "latency (table)", predicted, "ms",
                f"{described}; 95% interval {prediction.low_ms:.3f}-{prediction.high_ms:.3f} ms, the measured "
                f"{inside} it",
            )
        )  # fmt: skip
        report.details["latency_table_interval_ms"] = [prediction.low_ms, prediction.high_ms]
    if budget_ms is not None:
        verdict = budget_verdict(low, high, budget_ms)
        report.details["latency_budget_ms"] = budget_ms
        report.details["within_budget"] = {"keeps": True, "breaks": False}.get(verdict)
        report.details["budget_verdict"] = verdict
        report.notes.append(budget_line(device.name, (measured, low, high), budget_ms, predicted, described))
    runnable = backend.compile(net, [(batch, 3, h, w)])
    energy = measure_inference_energy(runnable.bind(runnable.example_inputs()), energy_meter, batch=batch, calls=passes)
    emission = carbon(energy, region)
    label = f"{energy.source}, {energy.calls} passes of batch {batch}"
    report.measures += [
        Measure("emission", emission.g_salnas, "gCO2eq per 200 x 64 inferences", f"{energy.source}, grid {region}"),
        Measure("emission per 1k", emission.g_per_1000, "gCO2eq per 1,000 inferences", f"{energy.source}, {region}"),
        Measure("power", energy.watts, "W", label),
        Measure("energy", energy.joules_per_inference * 1000, "mJ per inference", label),
        Measure("throughput", energy.throughput, "images/s", f"measured (wall clock, batch {batch})"),
    ]
    report.details |= {
        "energy": energy.to_dict(),
        "carbon": emission.to_dict(),
        "resolution": [w, h],
        "latency_statistic": "median",
        "region": region,
    }
    if energy.calls > passes:
        window = max(1.0, energy_meter.min_window_s)
        report.notes.append(
            f"ran {energy.calls} passes, not --passes {passes}: the {energy.source} meter needs at least "
            f"{window:g} s of work to read, and {passes} passes took less"
        )
    return report


__all__ = ["Measure", "Report", "artifact_size_mb", "report", "subnet_report"]
