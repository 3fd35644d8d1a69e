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
    check_early,
    err,
    flag,
    out,
    progress_bar,
    say,
    user_errors,
    warn,
)
from hwnas.errors import HwnasError
from hwnas.hardware.device import device_names, load_device, packaged_dir, spec_path
from hwnas.space import DEFAULT_SPACE
from hwnas.space.tasks import TASKS


def devices(devices_dir: DevicesDirOpt = None) -> None:
    """List the device specs (packaged, and yours in ./devices) and whether each runs on this host."""
    with user_errors():
        specs = [load_device(n, devices_dir) for n in device_names(devices_dir)]
    table = Table("device", "backend", "options", "runs here")
    absent = []
    for spec in specs:
        reason = spec.availability()
        opts = f"threads={spec.threads} {spec.precision}"
        opts += f" {spec.provider.replace('ExecutionProvider', ' EP')}" if spec.backend == "onnxruntime" else ""
        opts += f" {spec.compute_units}" if spec.backend == "coreml" else ""
        table.add_row(spec.name, spec.backend, opts, "[green]yes[/green]" if reason is None else "[red]no[/red]")
        if reason is not None:
            absent.append(f"{spec.name}: {reason}")
    out.print(table)
    for line in absent:
        say(escape(line), style="dim")
    if absent:
        say("profile a device that does not run here with `hwnas agent` on it and `hwnas profile --remote URL`")
    own = [n for n in device_names(devices_dir) if spec_path(n, devices_dir).parent != packaged_dir()]
    if own:
        say(f"from your folder: {', '.join(own)}; the others ship with hwnas", style="dim")


def profile(
    device: Annotated[
        list[str],
        typer.Option(
            "--device",
            "-d",
            metavar="DEVICE",
            help="device name (packaged, or in ./devices) or a spec .toml path; repeat, each with its --remote, "
            "to profile several devices at once",
        ),
    ],  # fmt: skip
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
    rounds: Annotated[
        int | None,
        typer.Option(
            help="exactly N interleaved rounds per block (with --max-rounds: at least N); default: at least 3, "
            "then more for each block until it is within --precise-to"
        ),
    ] = None,
    precise_to: Annotated[
        float,
        typer.Option(
            "--precise-to", metavar="PERCENT", help="measure each block until its 95% interval is within +-PERCENT"
        ),
    ] = 3.0,
    max_rounds: Annotated[
        int | None, typer.Option(help="the most rounds a block gets while not yet precise (default: 6)")
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="start no further round after this long (every block gets --rounds)"),
    ] = None,
    statistic: Annotated[
        str | None,
        typer.Option(
            help="what a row predicts with, of its rounds' medians: geomean (a new table's default), median, or min "
            "(the fastest call); default for a table resumed: its own"
        ),
    ] = None,
    energy: Annotated[bool, flag("--energy", help="add each block's energy (NVML/RAPL, else ESTIMATED)")] = False,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="end with a short end-to-end check (6 subnets per resolution) that calibrates the table",
            metavar="",
        ),
    ] = True,
    meter: MeterOpt = None,
    remote: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="measure on an agent (`hwnas agent` on the device), e.g. http://mac:8765; one per --device",
        ),
    ] = None,
    token: TokenOpt = None,
    devices_dir: DevicesDirOpt = None,
    few_shot: Annotated[
        int | None,
        typer.Option(
            "--few-shot",
            metavar="N",
            help="measure N whole subnets instead of every block, and predict the blocks from other devices' "
            "tables (a PREDICTED table; see --source)",
        ),
    ] = None,
    source: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="TABLE",
            help="--few-shot: a measured table to learn from, repeatable (default: every table of the space and head "
            "in the --out folder)",
        ),
    ] = None,
    strict: Annotated[
        bool,
        flag("--strict", help="stop (exit 2) when the machine check finds it noisy or it stays busy while measuring"),
    ] = False,
    seed: Annotated[int, typer.Option(help="--few-shot: seed of the subnets measured")] = 0,
    choose: Annotated[
        str, typer.Option(help="--few-shot: which subnets: spread (over the sources' latency range) or random")
    ] = "spread",
) -> None:
    """Measure every block of the space on the device into a latency table (resumable), or with
    --few-shot N, N whole subnets into a table predicted from other devices' tables."""
    check_early(space=space_name, devices=device, devices_dir=devices_dir, resolutions=resolution, task=task)
    from hwnas.hardware.precision import Precision

    with user_errors():
        precision = Precision.from_flags(rounds=rounds, percent=precise_to, max_rounds=max_rounds, max_s=max_time)
        if strict and remote:
            from hwnas.hardware.doctor import require_readable_state

            require_readable_state(remote[0])
        adaptive = {"--strict": strict, "--max-rounds": max_rounds, "--max-time": max_time,
                    "--precise-to": precise_to != Precision.from_flags().target * 100}  # fmt: skip
        given = [flag for flag, on in adaptive.items() if on]
        if few_shot is not None and given:
            raise HwnasError(
                f"{', '.join(given)}: for a full profile's blocks; --few-shot N measures N whole subnets in "
                "--rounds rounds"
            )
    if few_shot is not None:
        _profile_fewshot(device, remote, space_name, few_shot, source, lut_out=lut_out, task=task, classes=classes,
                         resolutions=resolution, rounds=rounds, energy=energy, seed=seed, choice=choose,
                         token=token, devices_dir=devices_dir)  # fmt: skip
        return
    if source:
        with user_errors():
            raise HwnasError("--source names the tables a --few-shot table learns from; add --few-shot N")
    if len(device) > 1:
        _profile_several(device, remote or [], space_name, devices_dir, token, lut_out=lut_out, task=task,
                         classes=classes, resolutions=resolution, precision=precision, statistic=statistic,
                         energy=energy, validate=validate)  # fmt: skip
        return
    if remote and len(remote) > 1:
        with user_errors():
            raise HwnasError(f"one --device is measured on one --remote agent, not {len(remote)}")
    device, remote = device[0], (remote[0] if remote else None)
    from hwnas.hardware.profiling import profile as run_profile

    with user_errors(resume="the table from the blocks already measured"), progress_bar() as bar:
        job = bar.add_task(
            f"profiling {Path(device).stem}/{Path(space_name or DEFAULT_SPACE).stem}", total=None, label=""
        )
        result = run_profile(
            device, space_name, task=task, classes=classes, resolutions=resolution, out=lut_out, precision=precision,
            statistic=statistic, energy=energy, validate=validate, meter=meter, remote=remote, token=token,
            devices_dir=devices_dir,
            progress=lambda done, total, label: bar.update(job, completed=done, total=total, label=label[:48]),
            on_resume=lambda path, done, total: err.print(
                f"resuming {path}: {done} of {total} measurements already done", highlight=False
            ),
            strict=strict, on_check=_say_machine, on_wait=warn,
        )  # fmt: skip
    table = result.table
    if table.energy_source is not None:
        label = "ESTIMATED" if table.energy_source.startswith("estimated") else "measured"
        say(f"energy column: {label} ({table.energy_source})")
    _say_profile(result, energy=energy, validate=validate)


def _say_machine(check) -> None:
    """The machine check's one line: a warning where it is noisy."""
    (warn if check.noisy else say)(check.line())


def _say_profile(result, *, energy: bool, validate: bool) -> None:
    table = result.table
    what = f"wrote {result.path}"
    if result.measured == 0 and not energy:
        what = f"{result.path} already had every block measured as far as asked: nothing measured"
    say(
        f"{len(table)} block signatures on {table.meta['device']['name']} ({table.meta['versions']}); "
        f"per-call overhead {table.overhead_ms * 1000:.1f} us; {what}"
    )
    target = f"+-{result.precision.target * 100:g}%"
    if result.imprecise:
        warn(
            f"{result.imprecise} of {len(table)} blocks are not within {target} (95% interval) after "
            f"{result.rounds} rounds: the machine is too noisy for that target; they are flagged "
            "(column `precise`), and `hwnas doctor` says what is loading it"
        )
    else:
        say(f"every block within {target} (95% interval)")
    if result.validation is not None:
        _say_check(result.validation)
    elif not validate:
        warn("not validated (--no-validate): searches will trust raw block sums; `hwnas lut validate` checks them")


def _profile_fewshot(devices, remotes, space_name, samples, sources, *, lut_out, energy, rounds, **options) -> None:
    """`profile --few-shot N`: one device, its N subnets measured whole, the table predicted."""
    from hwnas.hardware.fewshot import DEFAULT_FEWSHOT_ROUNDS, fewshot_profile

    with user_errors():
        if len(devices) > 1 or (remotes and len(remotes) > 1):
            raise HwnasError("--few-shot predicts one device's table: give one --device (and at most one --remote)")
        if energy:
            raise HwnasError("--few-shot predicts latency only; profile the device in full for --energy")
    with user_errors(), progress_bar() as bar:
        job = bar.add_task(f"few-shot {Path(devices[0]).stem}", total=None, label="")
        result = fewshot_profile(
            devices[0], space_name, samples=samples, out=lut_out, sources=sources,
            rounds=rounds or DEFAULT_FEWSHOT_ROUNDS, remote=remotes[0] if remotes else None, **options,
            progress=lambda done, total, label: bar.update(job, completed=done, total=total, label=label[:48]),
        )  # fmt: skip
    fit, table = result.fit, result.table
    mix = " + ".join(f"{w:.3f} x {Path(s).stem}" for w, s in zip(fit.weights, result.sources, strict=True))
    say(
        f"wrote {result.path}: {len(table)} block signatures {table.provenance()}; {len(result.archs)} subnets "
        f"measured in {result.device_s:.0f} s"
    )
    say(f"whole-subnet latency = {mix} {fit.intercept_ms:+.3f} ms (block sums of each source table)")
    warn(
        f"a PREDICTED table: `hwnas lut validate --device {devices[0]} --lut {result.path}` checks it on other subnets"
    )


def _profile_several(devices, remotes, space_name, devices_dir, token, *, lut_out, **options) -> None:
    """Several devices at once, each on its agent: a bar per device, a summary per device; exit 1
    if any device failed (the others' tables are written)."""
    from hwnas.hardware.profiling import profile_devices

    with user_errors(resume="each table from the blocks already measured"), progress_bar() as bar:
        jobs = {d: bar.add_task(f"profiling {Path(d).stem}", total=None, label="") for d in devices}

        def progress_for(device: str):
            return lambda done, total, label: bar.update(jobs[device], completed=done, total=total, label=label[:40])

        results = profile_devices(
            devices, remotes, space_name, token=token, devices_dir=devices_dir, progress_for=progress_for,
            out=lut_out, **options,
            on_resume=lambda path, done, total: err.print(
                f"resuming {path}: {done} of {total} measurements already done", highlight=False
            ),
        )  # fmt: skip
    for row in results:
        if row.profile is not None:
            _say_profile(row.profile, energy=False, validate=options["validate"])
        else:
            err.print(f"[red]error:[/red] {escape(row.device)} on {escape(row.remote)}: {escape(row.error)}")
    if any(row.profile is None for row in results):
        raise typer.Exit(1)


def _say_check(result) -> None:
    """One line per resolution of the end-to-end check that follows a profile."""
    for fit in result.fits:
        held = f"held-out error {fit.before.mape:.1f}% from block sums"
        if fit.applied:
            say(f"checked at {fit.resolution} on whole subnets: {held}, {fit.after.mape:.1f}% calibrated (line stored)")
        else:
            say(f"checked at {fit.resolution} on whole subnets: {held}; no line stored ({fit.refusal})")


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
    strict: Annotated[bool, flag("--strict", help="stop (exit 2) when the machine check finds it noisy")] = False,
) -> None:
    """Compare table predictions with end-to-end latency; store the calibration if it helps."""
    check_early(
        space=space_name, devices=[device], devices_dir=devices_dir, resolutions=[resolution] if resolution else None
    )
    from hwnas.hardware.table import sidecar_path
    from hwnas.hardware.validation import validate

    with user_errors(), progress_bar() as bar:
        job = bar.add_task(f"end-to-end on {Path(device).stem}", total=samples, label="")
        result = validate(
            device, lut_path, space=space_name, samples=samples, seed=seed, resolution=resolution, rounds=rounds,
            report=report_out, remote=remote, token=token, devices_dir=devices_dir, warn=warn,
            strict=strict, on_check=_say_machine,
            progress=lambda d, n, label: bar.update(job, completed=d, total=n, label=""),
        )  # fmt: skip
    if result.predicted_from is not None:
        warn(f"the table checked is {result.predicted_from}")
    _render_validation(result, sidecar_path(result.table_path))


def lut_transfer(
    device: Annotated[str, typer.Option("--device", "-d", help="the latency column to predict (latency_ms_DEVICE)")],
    benchmark: Annotated[
        Path | None,
        typer.Option(help="a NAS-Bench-201 table with latency_ms_* columns (default: the packaged one)"),
    ] = None,
    samples: Annotated[int, typer.Option(help="cells of the device's column to look up (its 'measurements')")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the cells looked up")] = 0,
    choose: Annotated[
        str,
        typer.Option(
            help="which cells: design (each the one the sources' prior predicts least surely), spread (one per "
            "slice of the sources' latency range) or random"
        ),
    ] = "design",
    source: Annotated[
        list[str] | None, typer.Option(help="a column to learn from, repeatable (default: every other one)")
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="the predicted table (default lut/nb201-DEVICE-fewshot.parquet)")
    ] = None,
) -> None:
    """Predict a device's latency column from a few of its cells and the other devices' columns (few-shot)."""
    from hwnas.hardware.transfer import transfer_benchmark

    out_path = out_path or Path(f"lut/nb201-{device}-fewshot.parquet")
    with user_errors(), progress_bar() as bar:
        job = bar.add_task("settings on the sources", total=None, label="")
        result = transfer_benchmark(
            benchmark, device, samples=samples, seed=seed, choice=choose, sources=source, out=out_path,
            progress=lambda done, total: bar.update(job, completed=done, total=total, label=""),
        )  # fmt: skip
    s = result.settings
    say(
        f"{device}: {len(result.predicted_ms):,} cells predicted from {result.samples} looked up ({result.choice}) "
        f"and {len(result.sources)} other devices ({', '.join(result.sources)})"
    )
    say(
        f"settings chosen on those devices (each predicted from {result.samples} of its cells and the others): "
        f"tau {s.tau:g}, sigma {s.sigma:g}, source_var {s.source_var:g}; their Spearman rho {result.meta_spearman:.4f}"
    )
    say(f"against the table's own latency_ms_{device}, which a new device would not have: Spearman rho "
        f"{result.checked_rho:.4f}")  # fmt: skip
    say(f"wrote {out_path} (predicted; its metadata says from what)")


def _render_validation(result, sidecar: Path) -> None:
    figures = Table(
        "subnets", "n", "MAPE %", "within 5% (count, 95% interval)", "within 10% (count, 95% interval)", "Kendall tau",
        "Spearman rho",
    )  # fmt: skip
    rows = [
        ("all, raw sum", result.all_raw),
        ("held-out, before calibration", result.holdout_before),
        ("held-out, as stored (line or raw)", result.holdout_after),
    ]
    if len(result.fits) > 1:
        for fit in result.fits:
            rows += [(f"  {fit.resolution} held-out, before", fit.before)]
            rows += [(f"  {fit.resolution} held-out, as stored", fit.after)]
    if result.repeatability:
        rows.append(("held-out, re-measured (half the rounds each)", result.repeatability))
    for label, f in rows:
        figures.add_row(
            label, str(f.n), f"{f.mape:.1f}", f.share_text(f.within_5), f.share_text(f.within_10),
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
                f"{line}, NOT stored: {fit.refusal}, so the table predicts raw block sums at {fit.resolution} "
                "(measure more --samples or --rounds to fit a better line)"
            )


def doctor(
    device: Annotated[str, typer.Option("--device", "-d", help="whose runtime times the sentinel")] = "cpu",
    remote: RemoteOpt = None,
    token: TokenOpt = None,
    seconds: Annotated[float, typer.Option(help="how long to time the sentinel")] = 5.0,
    devices_dir: DevicesDirOpt = None,
) -> None:
    """Check the measuring machine: what could skew timings (governor, boost, other processes, steal,
    throttling, power) and how noisy it measures now (a sentinel block timed in windows)."""
    check_early(devices=[device], devices_dir=devices_dir)
    from hwnas.hardware.agent.client import measurer_for
    from hwnas.hardware.doctor import check_machine

    with user_errors():
        if not seconds > 0:
            raise HwnasError(f"--seconds must be positive, got {seconds}")
        measurer = measurer_for(load_device(device, devices_dir), remote, token)
        check = check_machine(measurer, seconds=seconds)
    table = Table("what", "found")
    for name, found in check.findings.items():
        table.add_row(name, found)
    table.add_row("sentinel", f"{check.sentinel_ms:.3f} ms median, {check.noise_cv:.1%} between windows")
    out.print(table)
    _say_machine(check)


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
    lut_app = typer.Typer(
        help="Latency tables: validate against end-to-end measurements; predict a new device's (few-shot).",
        no_args_is_help=True,
    )
    lut_app.command("validate")(lut_validate)
    lut_app.command("transfer")(lut_transfer)
    app.add_typer(lut_app, name="lut")
    app.command()(agent)
    app.command()(doctor)
