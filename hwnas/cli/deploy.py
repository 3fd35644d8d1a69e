"""`hwnas report` (SalNAS's seven measures of one subnet) and `hwnas export` (verified artifacts)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import (
    ArchPickOpt,
    CheckpointOpt,
    DevicesDirOpt,
    MeterOpt,
    RoundsOpt,
    SpaceOpt,
    TorchDeviceOpt,
    check_early,
    err,
    out,
    say,
    user_errors,
    warn,
)
from hwnas.cli.common import DeviceOpt as TargetOpt
from hwnas.errors import HwnasError


def report(
    device: TargetOpt,
    arch_pick: Annotated[str, typer.Option("--arch", help="min, max, random, an arch line or .json (best.json)")],
    space_name: SpaceOpt = None,
    task: Annotated[
        str, typer.Option(help="head: saliency, classification, sod or segmentation (with --supernet: its own)")
    ] = "saliency",
    supernet: Annotated[Path | None, typer.Option(help="take the subnet's weights from this checkpoint")] = None,
    lut_path: Annotated[
        Path | None, typer.Option("--lut", help="table for the predicted latency (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    batch: Annotated[int, typer.Option(help="batch of the energy run (SalNAS: 64)")] = 64,
    passes: Annotated[int, typer.Option(help="forward passes of the energy run, at least (SalNAS: 200)")] = 200,
    region: Annotated[str | None, typer.Option(help="grid region, ISO 3166 alpha-3 (default: the spec's)")] = None,
    meter: MeterOpt = None,
    rounds: RoundsOpt = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON")] = None,
    devices_dir: DevicesDirOpt = None,
    torch_device: TorchDeviceOpt = "cpu",
) -> None:
    """SalNAS's seven measures for one subnet: FLOPs, params, size, emission, power, latency, throughput."""
    check_early(space=space_name, devices=[device], devices_dir=devices_dir, torch_device=torch_device)
    from hwnas.deploy.report import report as run_report
    from hwnas.files import atomic_write_json, writable_file

    with user_errors():
        if json_out is not None:
            writable_file(json_out, what="--json file")
        with out.status(f"measuring {arch_pick} on {device}"):
            result = run_report(
                device, arch_pick, space=space_name, supernet=supernet, task=task, lut=lut_path, batch=batch,
                passes=passes, region=region, meter=meter, rounds=rounds, devices_dir=devices_dir,
                torch_device=torch_device,
            )  # fmt: skip
        if json_out is not None:
            atomic_write_json(json_out, result.to_dict())
    say(f"{result.arch} on {result.device}; weights: {result.weights}")
    shown = Table("measure", "value", "unit", "source")
    for name, value, unit, source in _rows(result):
        estimated = source.startswith("estimated")
        shown.add_row(name, value, unit, f"[yellow]ESTIMATE[/] {escape(source)}" if estimated else escape(source))
    out.print(shown)
    for note in result.notes:
        say(note, style="dim")
    if json_out is not None:
        say(f"wrote {json_out}")


def _rows(report) -> list[tuple[str, str, str, str]]:
    """(measure, value, unit, source) strings for a table."""
    rows = []
    for m in report.measures:
        value = "-" if m.value is None or not math.isfinite(m.value) else f"{m.value:.4g}"
        rows.append((m.name, value, m.unit, m.source))
    return rows


def export(
    supernet: CheckpointOpt,
    arch_pick: ArchPickOpt = None,
    formats: Annotated[str, typer.Option("--format", "-f", help="comma-separated: onnx,tflite,coreml,tensorrt")] = (
        "onnx"
    ),
    device: Annotated[
        str | None,
        typer.Option("--device", "-d", help="target for its backend's format (defaults: cpu, cpu-tflite, m2, rtx4090)"),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("export"),
    name: Annotated[str | None, typer.Option(help="file name stem (default SPACE-ARCH, e.g. mini-best)")] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="check numerics and latency where the runtime runs here")
    ] = True,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 18,
    exporter: Annotated[str, typer.Option(help="ONNX exporter: dynamo (torch.export) or torchscript")] = "dynamo",
    data: Annotated[
        str | None, typer.Option(help="BN recalibration data (default: what the supernet trained on)")
    ] = None,
    lut_path: Annotated[
        Path | None, typer.Option("--lut", help="table to compare latency with (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    rounds: RoundsOpt = 3,
    devices_dir: DevicesDirOpt = None,
    torch_device: TorchDeviceOpt = "cpu",
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, fp16 or int8 for every format (default: each target device's own)"),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="int8 calibration images: a built-in set, a dataset folder or a folder of images "
            "(default: the checkpoint's training data)"
        ),
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="images to calibrate int8 activations on")] = 64,
    max_drop: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=VALUE: fail a quantized artifact whose task score drops more (repeatable)"),
    ] = None,
) -> None:
    """Export a subnet to runtime artifacts with manifests; verify numerics and latency where they run."""
    from hwnas.deploy.formats import parse_formats

    check_early(devices=[device] if device else [], devices_dir=devices_dir, torch_device=torch_device)
    with user_errors():
        parse_formats(formats)
        _check_precision_flags(precision, calibration, calibration_images)
    from hwnas.deploy.export import export as run_export

    with user_errors(), out.status("exporting") as status:
        result = run_export(
            supernet, arch_pick, formats=formats, device=device, out=out_dir, name=name, verify=verify,
            exporter=exporter, opset=opset, data=data, lut=lut_path, rounds=rounds, devices_dir=devices_dir,
            progress=lambda label: status.update(label), torch_device=torch_device, precision=precision,
            calibration=calibration, calibration_images=calibration_images, max_drop=max_drop,
        )  # fmt: skip
    _render_export(result)
    _render_accuracy(result)
    if result.failed:
        names = ", ".join(i.format for i in result.failed)
        err.print(f"[red]error:[/red] verification failed for {names}; see the manifests", highlight=False)
        raise typer.Exit(1)


def _check_precision_flags(precision: str | None, calibration: str | None, images: int) -> None:
    """The precision flags as text, before torch loads (the library checks them again)."""
    from hwnas.deploy.calibration import check_calibration, check_count
    from hwnas.hardware.device import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise HwnasError(f"unknown --precision '{precision}'; allowed: {', '.join(PRECISIONS)}")
    check_count(images)
    if calibration is not None:
        check_calibration(calibration)


def _render_accuracy(result) -> None:
    """The quantized artifacts' task scores beside fp32's, and how close the runtimes agree."""
    if result.calibration is not None:
        c = result.calibration
        say(f"int8 calibrated on {c['images']} images of {c['data']} ({c['kind']})", style="dim")
    scores = result.accuracy
    if scores is None or not scores.scores:
        return
    formats = sorted(scores.scores)
    table = Table("metric", "fp32", *[f"{f} (drop)" for f in formats])
    for metric, reference in scores.reference.items():
        cells = [f"{scores.scores[f][metric]:.4f} ({scores.drops[f][metric]:+.4f})" for f in formats]
        table.add_row(metric, f"{reference:.4f}", *cells)
    say(f"task scores on {scores.images} validation images of {scores.data} (drop: how much worse than fp32)")
    out.print(table)
    for pair, found in result.agreement.items():
        say(
            f"{pair.replace('~', ' vs ')}: outputs correlate {found['pearson']:.4f}, largest difference "
            f"{100 * found['max_abs_of_range']:.1f}% of their range on {found['images']} images",
            style="dim",
        )


def _render_export(result) -> None:
    say(f"{result.source.arch} ({result.source.bn})")
    results = Table("format", "device", "error / tol", "measured", "table", "verified")
    for item in result.items:
        v = item.verification
        numerics = f"{v.numerics.max_abs:.1e} / {v.numerics.atol:.0e}" if v.numerics else "-"
        colour = {"verified": "green", "failed": "red"}.get(v.status, "yellow")
        speed = v.speed
        measured = f"{speed.measured_ms:.3f} ms" if speed else "-"
        table = f"{speed.table_ms:.3f} {speed.delta_pct:+.0f}%" if speed and speed.table_ms is not None else "-"
        status = {"verified": "yes", "failed": "FAILED"}.get(v.status, "not here")
        results.add_row(item.format, item.device, numerics, measured, table, f"[{colour}]{status}[/]")
    out.print(results)
    files = 0
    for item in result.items:
        v = item.verification
        lines = [f"{v.status}: {v.reason}"] if v.reason else []
        if v.speed and v.speed.table_ms is None:
            lines.append(f"latency: {v.speed.table}")
        for line in [*lines, *(n for n in item.notes if n != v.reason)]:
            say(f"{item.format}: {escape(line)}", style="dim")
        written = [*item.paths, item.manifest]
        files += len(written)
        say(f"{item.format}: wrote {', '.join(p.name for p in written)}", style="dim")
    say(f"wrote {len(result.items)} format(s), {files} files, to {result.folder}/")
    for item in result.items:
        speed = item.verification.speed
        if speed is not None and speed.budget_ms is not None:
            (say if speed.within_budget else warn)(f"{item.format} on {speed.budget_line()}")
    if result.source.search and not any(i.verification.speed and i.verification.speed.budget_ms for i in result.items):
        budgets = ", ".join(result.source.search.get("budgets", []))
        say(f"searched under {budgets}: no format here was measured on the device whose budget that is", style="dim")


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(export)
