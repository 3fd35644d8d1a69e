"""`export`: a checkpoint's static subnet -> onnx / tflite / coreml / tensorrt artifacts, verified.

Everything a user gives (formats, devices, output folder, checkpoint, arch) is checked before the
first conversion; every file is written to a temp name and renamed, and each artifact gets a JSON
manifest (`<artifact>.json`) with the arch, space, checkpoint hash, input, preprocessing, output
meaning, tool versions and its verification. `export` returns an `ExportReport`; the CLI renders it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from hwnas.deploy.formats import FORMATS, parse_formats
from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.deploy.verify import FAILED, NOT_HERE, VERIFIED, Verification, compare, fixed_inputs, measure_speed
from hwnas.errors import HwnasError
from hwnas.files import atomic_write_json, writable_folder
from hwnas.hardware.backends import Protocol
from hwnas.hardware.device import Device, load_device
from hwnas.hardware.table import default_path as default_lut_path
from hwnas.hardware.table import now
from hwnas.nn.checkpoint import load
from hwnas.space.tasks import base_task
from hwnas.train.source import Source, load_source, resolve_arch

MANIFEST = {"format": "hwnas-export", "version": 1}
OUTPUT_MEANING = {
    "saliency": "saliency map, 1 x H x W at the input size, values in (0, 1) (sigmoid)",
    "classification": "class logits (apply softmax for probabilities)",
    "sod": "salient-object probability map, 1 x H x W at the input size, values in (0, 1); threshold for a mask",
    "segmentation": "class logits, num_classes x H x W at the input size; the argmax over classes is the class map",
}


@dataclass
class ExportItem:
    """One format's result: files written, the device it targets, its manifest and verification."""

    format: str
    device: str
    paths: list[Path]
    manifest: Path
    verification: Verification
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    name: str
    folder: Path
    source: Source
    items: list[ExportItem]

    @property
    def failed(self) -> list[ExportItem]:
        return [item for item in self.items if item.verification.status == FAILED]


def target_devices(
    names: list[str], device: str | Path | None, devices_dir: str | Path | None = None
) -> tuple[dict[str, Device], str | None]:
    """The device each format targets (`device` for the format of its backend, the default for the
    rest) and the format `device` went to."""
    chosen = load_device(device, devices_dir) if device is not None else None
    if chosen is not None and chosen.backend not in {FORMATS.get(n).backend for n in names}:
        matching = [n for n in FORMATS if FORMATS.get(n).backend == chosen.backend]
        hint = (
            f"it takes --format {matching[0]}" if matching else f"its backend '{chosen.backend}' has no export format"
        )
        raise HwnasError(f"--device {chosen.name} is not a target of --format {','.join(names)}: {hint}")
    out, chosen_format = {}, None
    for n in names:
        fmt = FORMATS.get(n)
        if chosen is not None and chosen.backend == fmt.backend:
            out[n], chosen_format = chosen, n
        else:
            try:
                out[n] = load_device(fmt.default_device, devices_dir)
            except HwnasError as exc:
                raise HwnasError(
                    f"--format {n} targets the device '{fmt.default_device}' by default, but {exc}"
                ) from None
    return out, chosen_format


def export(
    checkpoint: str | Path,
    arch: str | Path | None = None,
    *,
    formats: str | list[str] = "onnx",
    device: str | Path | None = None,
    out: str | Path = "export",
    name: str | None = None,
    verify: bool = True,
    exporter: str = "dynamo",
    opset: int = 18,
    data: str | None = None,
    lut: str | Path | None = None,
    lut_dir: str | Path = "lut",
    rounds: int = 3,
    protocol: Protocol | None = None,
    devices_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    torch_device: str = "cpu",
) -> ExportReport:
    """Export `arch` (min, max, an Arch JSON file) of `checkpoint` to each format and verify it.

    `device` replaces the default target of the format with its backend (onnx: cpu, tflite:
    cpu-tflite, coreml: m2, tensorrt: rtx4090); `lut` is the table to compare measured latency with
    (default `lut_dir/<device>-<space>.parquet`). Numerics use 3 seeded inputs; latency uses the
    shared protocol in `rounds` rounds. A supernet's subnet is extracted and its BN recalibrated on
    `torch_device`; the exporters take it on the CPU. Raises `HwnasError` for any bad input before
    writing.
    """
    names = parse_formats(formats)
    devices, chosen_format = target_devices(names, device, devices_dir)
    if exporter not in ("dynamo", "torchscript"):
        raise HwnasError(f"unknown ONNX exporter '{exporter}'; allowed: dynamo, torchscript")
    if not 7 <= opset <= 23:
        raise HwnasError(f"--opset must be between 7 and 23, got {opset}")
    if rounds < 1:
        raise HwnasError(f"--rounds must be at least 1, got {rounds}")
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise HwnasError(f"--name must be a plain file name (no '/', not hidden), got '{name}'")
    lut_format = _lut_format(names, chosen_format, lut)
    ckpt = load(checkpoint)
    space = ckpt.space
    resolve_arch(ckpt, arch)  # fails fast, before any work
    folder = writable_folder(out)
    step = progress or (lambda label: None)
    step("extracting the subnet")
    subnet, source = load_source(checkpoint, arch, data=data, device=torch_device)
    w, h = source.arch.resolution
    job = Job(
        subnet, space, source.arch, source.task, (1, 3, h, w), num_classes=source.num_classes, exporter=exporter,
        opset=opset,
    )  # fmt: skip
    name = name or f"{space.name}-{source.label}"
    items = []
    for n in names:
        fmt, target = FORMATS.get(n)(), devices[n]
        job.input_shape = (target.batch, 3, h, w)
        step(f"{n}: converting for {target.name}")
        written = fmt.write(job, target, folder, name)
        table = Path(lut) if n == lut_format else default_lut_path(target.name, space.name, lut_dir)
        budget = (source.search or {}).get("latency_budget_ms", {}).get(target.name)
        verification = _verify(fmt, written, target, job, table, verify, rounds, protocol, step, budget)
        manifest = _write_manifest(fmt, written, target, job, source, verification, name)
        items.append(ExportItem(n, target.name, written.paths, manifest, verification, written.notes))
    return ExportReport(name, folder, source, items)


def _lut_format(names: list[str], chosen: str | None, lut: str | Path | None) -> str | None:
    """The format `lut` is compared with: the one `--device` targets, or the only one."""
    if lut is None:
        return None
    if chosen is None and len(names) != 1:
        raise HwnasError("--lut names one table: pass --device, or a single --format")
    return chosen or names[0]


def _verify(fmt, written, device, job, table, verify, rounds, protocol, step, budget_ms) -> Verification:
    if not written.verifiable:
        return Verification(NOT_HERE, written.notes[-1] if written.notes else "no runnable artifact here")
    if not verify:
        return Verification(NOT_HERE, "verification switched off (--no-verify)")
    reason = fmt.unavailable(device)
    if reason is not None:
        return Verification(NOT_HERE, reason)
    step(f"{fmt.name}: checking numerics on {device.name}")
    runnable, artifact = fmt.load(written, device, job)
    numerics = compare(runnable, job.subnet, fixed_inputs(job.input_shape), fmt.tolerance(device))
    if not numerics.passed:
        return Verification(FAILED, "outputs differ from PyTorch beyond the tolerance", numerics)
    step(f"{fmt.name}: measuring latency on {device.name}")
    speed = measure_speed(
        device, artifact, job.arch, job.space, job.task, table, num_classes=job.num_classes, rounds=rounds,
        protocol=protocol, budget_ms=budget_ms,
    )  # fmt: skip
    return Verification(VERIFIED, "", numerics, speed)


def _target_options(device: Device) -> dict:
    """The spec's options that shape the artifact (its profiling exporter/opset do not: see details)."""
    return {k: v for k, v in device.options().items() if k not in ("exporter", "opset")}


def _write_manifest(
    fmt: Format, written: Written, device: Device, job: Job, source: Source, verification: Verification, name: str
) -> Path:
    """`<name>.<format>.json` beside the artifact: everything needed to use and trust it."""
    w, h = job.arch.resolution
    manifest = {
        **MANIFEST,
        "created": now(),
        "artifact": written.artifact.name,
        "files": [p.name for p in written.paths],
        "target": {"format": fmt.name, "device": device.name, **_target_options(device)},
        "space": {"name": source.space.name, "digest": source.space.digest()},
        "arch": source.space.arch_to_dict(source.arch),
        "arch_line": str(source.arch),
        "checkpoint": {
            "path": str(source.checkpoint),
            "sha256": source.sha256,
            "kind": source.kind,
            "epoch": source.epoch,
            "data": source.data,
            "batch_norm": source.bn,
        },
        "input": {"name": written.inputs[0], "shape": list(job.input_shape), "layout": "NCHW", "dtype": "float32"},
        "preprocessing": {
            "resolution": [w, h],
            "color": "RGB",
            "scale": "1/255",
            "mean": list(source.mean),
            "std": list(source.std),
            "formula": "(pixel / 255 - mean) / std per channel",
        },
        "output": {
            "name": written.outputs[0],
            "task": source.task,
            "num_classes": source.num_classes,
            "meaning": OUTPUT_MEANING.get(base_task(source.task), source.task),
        },
        "details": written.info,
        "notes": written.notes,
        "tools": {**written.tools, "hwnas": version("hwnas"), "python": platform.python_version()},
        "verification": verification.to_dict(),
    }
    return atomic_write_json(written.artifact.parent / f"{name}.{fmt.name}.json", manifest)


__all__ = ["ExportItem", "ExportReport", "export", "parse_formats"]
