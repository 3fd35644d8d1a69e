"""`export`: a checkpoint's static subnet -> onnx / tflite / coreml / tensorrt artifacts, verified.

Everything a user gives (formats, devices, output folder, checkpoint, arch) is checked before the
first conversion; every file is written to a temp name and renamed, and each artifact gets a JSON
manifest (`<artifact>.json`) with the arch, space, checkpoint hash, input, preprocessing, output
meaning, tool versions and its verification. `export` returns an `ExportReport`; the CLI renders it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from itertools import combinations
from pathlib import Path

from hwnas.deploy.accuracy import (
    AGREEMENT_IMAGES,
    RuntimeNet,
    TaskScores,
    agreement,
    drop,
    outputs_on,
    parse_max_drops,
    task_metrics,
    task_scores,
)
from hwnas.deploy.calibration import DEFAULT_IMAGES, calibration_set, check_calibration, check_count
from hwnas.deploy.formats import FORMATS, parse_formats
from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.deploy.verify import FAILED, NOT_HERE, VERIFIED, Verification, compare, fixed_inputs, measure_speed
from hwnas.errors import HwnasError
from hwnas.files import atomic_write_json, writable_folder
from hwnas.hardware.backends import Protocol, Runnable
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
    calibration: dict | None = None  # what the int8 artifacts were calibrated on
    accuracy: TaskScores | None = None  # the quantized artifacts' task scores beside fp32's
    agreement: dict[str, dict] = field(default_factory=dict)  # "onnx~tflite" -> how close their outputs are

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
    precision: str | None = None,
    calibration: str | None = None,
    calibration_images: int = DEFAULT_IMAGES,
    max_drop: list[str] | None = None,
) -> ExportReport:
    """Export `arch` (min, max, an Arch JSON file) of `checkpoint` to each format and verify it.

    `device` replaces the default target of the format with its backend (onnx: cpu, tflite:
    cpu-tflite, coreml: m2, tensorrt: rtx4090); `lut` is the table to compare measured latency with
    (default `lut_dir/<device>-<space>.parquet`). Numerics use 3 seeded inputs; latency uses the
    shared protocol in `rounds` rounds. A supernet's subnet is extracted and its BN recalibrated on
    `torch_device`; the exporters take it on the CPU. Raises `HwnasError` for any bad input before
    writing.

    `precision` (fp32, fp16, int8) replaces each target's own, where its backend builds it. An int8
    artifact is calibrated on `calibration_images` images of `calibration` (default: the checkpoint's
    data; `hwnas.deploy.calibration`), checked on real images, and scored by the task's metric on the
    validation split beside the fp32 extract (`hwnas.deploy.accuracy`); `max_drop` items
    (`METRIC=VALUE`) fail an artifact whose drop exceeds one.
    """
    names = parse_formats(formats)
    devices, chosen_format = target_devices(names, device, devices_dir)
    devices = {n: d.at_precision(precision) for n, d in devices.items()}
    quantized = sorted({d.precision for d in devices.values()} - {"fp32"})
    check_count(calibration_images)
    if calibration is not None:
        check_calibration(calibration)  # before any work
    if calibration is not None and "int8" not in quantized:
        raise HwnasError("--calibration calibrates int8 artifacts: pass --precision int8 or an int8 --device")
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
    limits = parse_max_drops(max_drop or [], task_metrics(ckpt.task))
    if limits and not quantized:
        raise HwnasError("--max-drop judges a quantized artifact: pass --precision int8 (or an int8 --device)")
    folder = writable_folder(out)
    step = progress or (lambda label: None)
    step("extracting the subnet")
    subnet, source = load_source(checkpoint, arch, data=data, device=torch_device)
    w, h = source.arch.resolution
    job = Job(
        subnet, space, source.arch, source.task, (1, 3, h, w), num_classes=source.num_classes, exporter=exporter,
        opset=opset,
    )  # fmt: skip
    calibrated = None
    if "int8" in quantized:
        step("reading the calibration images")
        calibrated = calibration_set(
            calibration or _checkpoint_data(ckpt, data), task=source.task, resolution=(w, h), mean=source.mean,
            std=source.std, count=calibration_images,
        )  # fmt: skip
        job.calibration = calibrated.input_sets()
    judge = _Judge(ckpt, data, subnet, (w, h), limits) if quantized and verify else None
    name = name or f"{space.name}-{source.label}"
    items, written_by = [], {}
    for n in names:
        fmt, target = FORMATS.get(n)(), devices[n]
        job.input_shape = (target.batch, 3, h, w)
        step(f"{n}: converting for {target.name}")
        written = fmt.write(job, target, folder, name)
        table = Path(lut) if n == lut_format else default_lut_path(target.name, space.name, lut_dir)
        budget = (source.search or {}).get("latency_budget_ms", {}).get(target.name)
        inputs = calibrated.images[:3] if calibrated is not None else None
        verification, runnable = _verify(fmt, written, target, job, table, verify, rounds, protocol, step, budget,
                                         inputs)  # fmt: skip
        scorer = _scorer(runnable, written, job) if judge is not None and target.precision != "fp32" else None
        if scorer is not None:
            step(f"{n}: scoring on the validation split")
            verification = judge.score(n, scorer, verification, in_runtime=scorer is runnable)
        written_by[n] = (fmt, target, written, verification)
        extra = _extra(n, target, calibrated, judge)
        manifest = _write_manifest(fmt, written, target, job, source, verification, name, extra)
        items.append(ExportItem(n, target.name, written.paths, manifest, verification, written.notes))
    agreement = judge.agreement() if judge is not None else {}
    for n in {n for pair in agreement for n in pair.split("~")}:  # known once every format has run
        fmt, target, written, verification = written_by[n]
        extra = _extra(n, target, calibrated, judge, agreement)
        _write_manifest(fmt, written, target, job, source, verification, name, extra)
    accuracy = judge.scores if judge is not None else None
    return ExportReport(name, folder, source, items, calibrated.to_dict() if calibrated else None, accuracy, agreement)


def _extra(fmt: str, target: Device, calibrated, judge, agreement: dict | None = None) -> dict:
    """What a manifest adds for `fmt`: its precision and, quantized, its calibration, task scores
    and (once known) its agreement with the other quantized formats."""
    extra: dict = {"precision": target.precision}
    if target.precision == "int8" and calibrated is not None:
        extra["calibration"] = calibrated.to_dict()
    if judge is not None and judge.scores is not None and fmt in judge.scores.scores:
        extra["accuracy"] = judge.scores.of(fmt)
        extra["agreement"] = {k: v for k, v in (agreement or {}).items() if fmt in k.split("~")}
    return extra


def _scorer(runnable: Runnable | None, written: Written, job: Job) -> Runnable | None:
    """What scores a quantized artifact: its runtime here, else the torch graph it was converted from
    where that graph computes what it does (`Written.twin`, noted), else nothing."""
    if runnable is not None or written.twin is None:
        return runnable
    import torch

    from hwnas.hardware.backends.torch import TorchRunnable

    written.notes.append(
        "task scores computed in torch on the graph the artifact was converted from (its runtime does not run here)"
    )
    return TorchRunnable(written.twin, [job.input_shape], "cpu", torch.get_num_threads())


def _checkpoint_data(ckpt, data: str | None) -> str:
    """The data a checkpoint trained on (or `data`): the default calibration set."""
    chosen = data or ckpt.data.get("data")
    if not chosen:
        raise HwnasError(f"{ckpt.path} names no training data: pass --calibration with images to calibrate on")
    return str(chosen)


class _Judge:
    """Scores each quantized artifact on the validation split beside the fp32 `subnet` (scored
    once), keeps their outputs on the first images for the runtimes' agreement, applies `limits`."""

    def __init__(self, ckpt, data: str | None, subnet, resolution: tuple[int, int], limits: dict[str, float]):
        self.ckpt, self.data = ckpt, data  # the dataset is read when the first artifact is scored
        self.subnet, self.resolution, self.limits = subnet, resolution, limits
        self.scores: TaskScores | None = None  # the fp32 reference is scored with the first artifact
        self.outputs: dict[str, object] = {}

    def score(self, fmt: str, runnable, verification: Verification, *, in_runtime: bool = True) -> Verification:
        """`verification` with the artifact's task scores recorded, failed if a drop exceeds its limit;
        only artifacts run `in_runtime` join the runtimes' agreement."""
        if self.scores is None:
            from hwnas.train.source import checkpoint_data
            from hwnas.train.task import make_task

            self.dataset = checkpoint_data(self.ckpt, self.data)
            self.task = make_task(self.ckpt.task, self.ckpt.num_classes)
            reference = task_scores(self.subnet, self.dataset, self.task, resolution=self.resolution)
            self.scores = TaskScores(self.dataset.name, len(self.dataset.val), reference, max_drop=self.limits)
            self.images = _first_images(self.dataset, self.resolution)
        net = RuntimeNet(runnable, self.subnet.arch)
        scores = task_scores(net, self.dataset, self.task, resolution=self.resolution)
        self.scores.scores[fmt] = scores
        self.scores.drops[fmt] = {m: drop(m, v, scores[m]) for m, v in self.scores.reference.items() if m in scores}
        if in_runtime:
            self.outputs[fmt] = outputs_on(runnable, self.images)
        exceeded = self.scores.exceeded(fmt)
        if exceeded:
            reasons = [verification.reason] if verification.status == FAILED else []
            return replace(verification, status=FAILED, reason="; ".join([*reasons, *exceeded]))
        return verification

    def agreement(self) -> dict[str, dict]:
        names = sorted(self.outputs)
        return {f"{a}~{b}": agreement(self.outputs[a], self.outputs[b]) for a, b in combinations(names, 2)}


def _first_images(dataset, resolution: tuple[int, int]) -> list:
    """The first `AGREEMENT_IMAGES` validation images, normalised, one (1, 3, h, w) array each."""
    split = dataset.split("val", resolution)
    rows = split.rows(slice(0, min(AGREEMENT_IMAGES, len(split))))
    images = dataset.normalised(rows)["image"].numpy()
    return [images[i : i + 1] for i in range(len(images))]


def _lut_format(names: list[str], chosen: str | None, lut: str | Path | None) -> str | None:
    """The format `lut` is compared with: the one `--device` targets, or the only one."""
    if lut is None:
        return None
    if chosen is None and len(names) != 1:
        raise HwnasError("--lut names one table: pass --device, or a single --format")
    return chosen or names[0]


def _verify(
    fmt, written, device, job, table, verify, rounds, protocol, step, budget_ms, inputs
) -> tuple[Verification, Runnable | None]:
    """The artifact's verification, and the artifact loaded in its runtime where it runs here.
    Numerics are compared on `inputs` (real images; default: seeded normal ones)."""
    if not written.verifiable:
        return Verification(NOT_HERE, written.notes[-1] if written.notes else "no runnable artifact here"), None
    if not verify:
        return Verification(NOT_HERE, "verification switched off (--no-verify)"), None
    reason = fmt.unavailable(device)
    if reason is not None:
        return Verification(NOT_HERE, reason), None
    step(f"{fmt.name}: checking numerics on {device.name}")
    runnable, artifact = fmt.load(written, device, job)
    numerics = compare(runnable, job.subnet, inputs or fixed_inputs(job.input_shape), fmt.tolerance(device))
    if not numerics.passed:
        return Verification(FAILED, "outputs differ from PyTorch beyond the tolerance", numerics), runnable
    step(f"{fmt.name}: measuring latency on {device.name}")
    speed = measure_speed(
        device, artifact, job.arch, job.space, job.task, table, num_classes=job.num_classes, rounds=rounds,
        protocol=protocol, budget_ms=budget_ms,
    )  # fmt: skip
    return Verification(VERIFIED, "", numerics, speed), runnable


def _target_options(device: Device) -> dict:
    """The spec's options that shape the artifact (its profiling exporter/opset do not: see details)."""
    return {k: v for k, v in device.options().items() if k not in ("exporter", "opset")}


def _write_manifest(
    fmt: Format,
    written: Written,
    device: Device,
    job: Job,
    source: Source,
    verification: Verification,
    name: str,
    extra: dict,
) -> Path:
    """`<name>.<format>.json` beside the artifact: everything needed to use and trust it; `extra`
    (precision, and for a quantized artifact its calibration, task scores and agreement) on top."""
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
        **extra,
    }
    for side in ("input", "output"):
        quantization = written.info.get(f"{side}_quantization")
        if quantization:  # a full-integer model: the integers and what they stand for
            manifest[side].update(dtype=quantization[0]["dtype"], quantization=quantization[0])
    return atomic_write_json(written.artifact.parent / f"{name}.{fmt.name}.json", manifest)


__all__ = ["ExportItem", "ExportReport", "export", "parse_formats"]
