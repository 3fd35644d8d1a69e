"""`hwnas devices`, `hwnas profile`, `hwnas lut validate` and `hwnas agent`: the targets and their tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import (
    DeviceOpt,
    DevicesDirOpt,
    MeterOpt,
    RemoteOpt,
    RoundsOpt,
    SpaceOpt,
    TokenOpt,
    err,
    flag,
    out,
    parse_resolutions,
    progress_bar,
    say,
    user_errors,
    warn,
)
from hwnas.errors import HwnasError
from hwnas.hardware.device import device_names, load_device, packaged_dir, spec_path
from hwnas.space import DEFAULT_SPACE, SearchSpace
from hwnas.space.tasks import TASKS, base_task, check_task


def devices(devices_dir: DevicesDirOpt = None) -> None:
    """List the device specs (packaged, and yours in ./devices) and whether each runs on this host."""
    with user_errors():
        specs = [load_device(n, devices_dir) for n in device_names(devices_dir)]
    table = Table("device", "backend", "options", "runs here", "why not / what to do")
    for spec in specs:
        reason = spec.availability()
        opts = f"threads={spec.threads} {spec.precision}"
        opts += f" {spec.provider}" if spec.backend == "onnxruntime" else ""
        opts += f" {spec.compute_units}" if spec.backend == "coreml" else ""
        table.add_row(
            spec.name,
            spec.backend,
            opts,
            "[green]yes[/green]" if reason is None else "[red]no[/red]",
            "" if reason is None else escape(f"{reason}; profile it with `hwnas agent` on the target (--remote)"),
        )
    out.print(table)
    own = [n for n in device_names(devices_dir) if spec_path(n, devices_dir).parent != packaged_dir()]
    if own:
        say(f"from your folder: {', '.join(own)}; the others ship with hwnas", style="dim")


def _measurer(spec, remote: str | None, token: str | None):
    """Where the timings come from: this host, or the agent at `remote`."""
    from hwnas.hardware.measurer import LocalMeasurer

    if remote is None:
        return LocalMeasurer(spec)
    from hwnas.hardware.agent.client import RemoteMeasurer
    from hwnas.hardware.agent.wire import TOKEN_ENV

    return RemoteMeasurer(remote, token=token or os.environ.get(TOKEN_ENV), device=spec)


def profile(
    device: DeviceOpt,
    space_name: SpaceOpt = None,
    task: Annotated[
        str,
        typer.Option(
            help=f"head whose blocks are profiled: {', '.join(TASKS)}, saliency/noblur, a sod variant "
            "(sod/unet+focus) or segmentation+aux"
        ),  # fmt: skip
    ] = "saliency",
    classes: Annotated[
        int | None,
        typer.Option(help="segmentation or classification: the head's class count (default: 19, Cityscapes; 1000)"),
    ] = None,
    resolution: Annotated[
        list[str] | None, typer.Option(help="repeatable; default: all of the space's", metavar="WxH")
    ] = None,
    lut_out: Annotated[
        Path | None, typer.Option("--out", "-o", help="table path (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    rounds: RoundsOpt = 4,
    statistic: Annotated[
        str, typer.Option(help="what a row predicts with: median (over rounds of each round's median) or min")
    ] = "median",
    energy: Annotated[bool, flag("--energy", help="add each block's energy (NVML/RAPL, else ESTIMATED)")] = False,
    meter: MeterOpt = None,
    remote: RemoteOpt = None,
    token: TokenOpt = None,
    devices_dir: DevicesDirOpt = None,
) -> None:
    """Measure every block of the space on the device into a latency table (resumable)."""
    from hwnas.files import writable_file
    from hwnas.hardware.energy import choose_meter
    from hwnas.hardware.profiling import profile as run_profile
    from hwnas.hardware.table import STATISTICS, default_path

    with user_errors(resume="the table from the blocks already measured"):
        check_task(task)
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name or DEFAULT_SPACE)
        res = parse_resolutions(resolution)
        for r in res or []:
            sp.check_resolution(r)
        if rounds < 1:
            raise HwnasError(f"--rounds must be at least 1, got {rounds}")
        if classes is not None and (classes < 1 or base_task(task) not in ("classification", "segmentation")):
            raise HwnasError(f"--classes is a positive class count for the segmentation or classification head; got "
                             f"{classes} for {task}")  # fmt: skip
        if statistic not in STATISTICS:
            raise HwnasError(f"unknown --statistic '{statistic}'; allowed: {', '.join(STATISTICS)}")
        path = writable_file(lut_out or default_path(spec.name, sp.name), what="latency table")
        measurer = _measurer(spec, remote, token)
        with progress_bar() as bar:
            job = bar.add_task(f"profiling {spec.name}/{sp.name}", total=None, label="")
            state = {"start": None}

            def report(done: int, total: int, label: str) -> None:
                if state["start"] is None:
                    state["start"] = done
                    if 0 < done < total:
                        err.print(f"resuming {path}: {done} of {total} measurements already done", highlight=False)
                bar.update(job, completed=done, total=total, label=label[:48])

            chosen_meter = choose_meter(spec, kind=meter) if energy else None
            table = run_profile(
                spec, sp, task=task, resolutions=res, out=path, rounds=rounds, statistic=statistic,
                progress=report, energy=energy, meter=chosen_meter, measurer=measurer, classes=classes,
            )  # fmt: skip
    if table.energy_source is not None:
        label = "ESTIMATED" if table.energy_source.startswith("estimated") else "measured"
        say(f"energy column: {label} ({table.energy_source})")
    what = f"wrote {path}"
    if state["start"] is not None and state["start"] >= len(table) * rounds and not energy:
        what = f"{path} already had every block at {rounds} rounds: nothing measured"
    say(
        f"{len(table)} block signatures on {spec.name} ({table.meta['versions']}); "
        f"per-call overhead {table.overhead_ms * 1000:.1f} us; {what}"
    )


def lut_validate(
    device: DeviceOpt,
    space_name: SpaceOpt = None,
    lut_path: Annotated[
        Path | None, typer.Option("--lut", help="table path (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    samples: Annotated[int, typer.Option(help="subnets to measure end to end (min and max included)")] = 20,
    seed: Annotated[int, typer.Option(help="seed for the random subnets and the calibration split")] = 0,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="validate at this resolution only (default: every resolution the table profiled, one line each)",
            metavar="WxH",
        ),
    ] = None,
    report_out: Annotated[Path | None, typer.Option("--report", help="write the per-subnet report as JSON")] = None,
    rounds: RoundsOpt = 4,
    remote: RemoteOpt = None,
    token: TokenOpt = None,
    devices_dir: DevicesDirOpt = None,
) -> None:
    """Compare table predictions with end-to-end latency; store the calibration if it helps."""
    from hwnas.files import atomic_write_json, writable_file
    from hwnas.hardware.table import LatencyTable, default_path, sidecar_path
    from hwnas.hardware.validation import validate as run_validate

    with user_errors():
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name or DEFAULT_SPACE)
        path = lut_path or default_path(spec.name, sp.name)
        table = LatencyTable.load(path, sp)
        res = parse_resolutions([resolution] if resolution else None)
        for r in res or []:
            sp.check_resolution(r)
        if report_out is not None:
            writable_file(report_out, what="--report file")
        writable_file(sidecar_path(path), what="latency table sidecar")
        measurer = _measurer(spec, remote, token)
        for note in table.compatibility_warnings(spec.options(), measurer.versions()):
            warn(note)
        with progress_bar() as bar:
            job = bar.add_task(f"end-to-end on {spec.name}", total=samples, label="")
            result = run_validate(
                spec, table, samples=samples, seed=seed, resolution=res[0] if res else None, rounds=rounds,
                progress=lambda d, n, label: bar.update(job, completed=d, total=n, label=""), measurer=measurer,
            )  # fmt: skip
        table.save(path)
        if report_out is not None:
            atomic_write_json(report_out, result.to_dict())
    _render_validation(result, sidecar_path(path))


def _render_validation(result, sidecar: Path) -> None:
    figures = Table("subnets", "n", "MAPE %", "within 5%", "within 10%", "Kendall tau", "Spearman rho")
    rows = [
        ("all, raw sum", result.all_raw),
        ("held-out, before calibration", result.holdout_before),
        ("held-out, after calibration", result.holdout_after),
    ]
    if len(result.fits) > 1:
        for fit in result.fits:
            rows += [(f"  {fit.resolution} held-out, before", fit.before)]
            rows += [(f"  {fit.resolution} held-out, after", fit.after)]
    if result.repeatability:
        rows.append(("held-out, re-measured (half the rounds each)", result.repeatability))
    for label, f in rows:
        figures.add_row(
            label, str(f.n), f"{f.mape:.1f}", f"{f.within_5:.0%}", f"{f.within_10:.0%}",
            f"{f.kendall_tau:.3f}", f"{f.spearman_rho:.3f}",
        )  # fmt: skip
    out.print(figures)
    if result.repeatability:
        say(
            f"the measurement itself: its two halves of rounds rank the held-out subnets with Kendall tau "
            f"{result.repeatability.kendall_tau:.3f}; no table can rank them better on this machine now"
        )
    for fit in result.fits:
        cal = fit.calibration
        line = (
            f"calibration at {fit.resolution}: measured = {cal.slope:.4f} x table + {cal.intercept_ms:.4f} ms "
            f"(fitted on {cal.fitted_on})"
        )
        if fit.applied:
            say(f"{line}, stored in {sidecar}")
        else:
            say(
                f"{line}, NOT stored: it raises the held-out MAPE from {fit.before.mape:.1f}% to "
                f"{fit.after.mape:.1f}%, so the table predicts raw block sums at {fit.resolution} (measure more "
                "--samples or --rounds to fit a better line)"
            )


def agent(
    host: Annotated[str, typer.Option(help="address to listen on (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8765,
    token: Annotated[str | None, typer.Option(help="token hosts must send (default: $HWNAS_AGENT_TOKEN)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the token from this file")] = None,
    devices_dir: DevicesDirOpt = None,
) -> None:
    """Serve profiling jobs for hosts (`hwnas profile --remote`): run this on the device."""
    from hwnas.hardware.agent.server import resolve_token, serve
    from hwnas.hardware.agent.wire import TOKEN_ENV

    with user_errors():
        if not 1 <= port <= 65535:
            raise HwnasError(f"--port must be 1-65535, got {port}")
        secret, generated = resolve_token(
            token or os.environ.get(TOKEN_ENV), str(token_file) if token_file else None, host
        )
        names = device_names(devices_dir)
    runs = [n for n in names if load_device(n, devices_dir).availability() is None]
    out.print(f"hwnas agent on http://{host}:{port} (devices that run here: {', '.join(runs) or 'none'})")
    if generated:
        say(f"token (pass it to the host as --token or {TOKEN_ENV}): {secret}")
    serve(host=host, port=port, token=secret, devices_dir=devices_dir)


def register(app: typer.Typer) -> None:
    app.command()(devices)
    app.command()(profile)
    lut_app = typer.Typer(help="Latency tables: validate against end-to-end measurements.", no_args_is_help=True)
    lut_app.command("validate")(lut_validate)
    app.add_typer(lut_app, name="lut")
    app.command()(agent)
