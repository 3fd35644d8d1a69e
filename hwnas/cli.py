"""The `hwnas` command line: parse, call the library, render with rich. No logic lives here.

Every `HwnasError` becomes one red line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hwnas.devices import DEFAULT_DIR as DEFAULT_DEVICES_DIR
from hwnas.devices import device_names, load_device
from hwnas.errors import HwnasError
from hwnas.head import TASKS, SodHead, check_task, is_sod
from hwnas.io import atomic_write_json
from hwnas.lut import STATISTICS, LatencyTable, sidecar_path
from hwnas.lut import default_path as default_lut_path
from hwnas.profiler import DEFAULT_STATISTIC
from hwnas.profiler import profile as run_profile
from hwnas.profiler import validate as run_validate
from hwnas.space import Arch, SearchSpace

app = typer.Typer(
    help="hwnas: hardware-aware latency profiling, architecture search and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

SpaceOpt = Annotated[str, typer.Option("--space", "-s", help="preset name or path to a space .toml")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one clear line and exit code 2."""
    try:
        yield
    except HwnasError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def space(
    name: Annotated[str, typer.Argument(help="preset name or path to a space .toml")] = "alphanet",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Show a search space: its choices, size, and the min/max subnets' params and FLOPs."""
    with user_errors():
        sp = SearchSpace.load(name)
        summary = _space_summary(sp)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]{sp.name}[/bold]: {sp.description}")
    out.print(f"distinct subnets: {sp.size():,} (~10^{math.log10(sp.size()):.1f}); encoded variables: {sp.n_var}")
    out.print("resolutions (W x H): " + ", ".join(f"{w}x{h}" for w, h in sp.resolutions))
    table = Table("block", "widths", "depths", "kernels", "expansions", "SE", "stride", "act")
    table.add_row(
        "stem", str(list(sp.stem.widths)), "-", str(sp.stem.kernel), "-", "-", str(sp.stem.stride), sp.stem.act
    )
    for i, st in enumerate(sp.stages, start=1):
        table.add_row(
            f"MBConv-{i}",
            str(list(st.widths)),
            str(list(st.depths)),
            str(list(st.kernels)),
            str(list(st.expansions)),
            "Y" if st.se else "N",
            str(st.stride),
            st.act,
        )
    table.add_row("last conv", str(list(sp.last.widths)), "-", "1", "-", "-", "1", sp.last.act)
    out.print(table)
    cost = Table("subnet", "head", "params (M)", "FLOPs (G)", "MACs (G)")
    for row in summary["extremes"]:
        cost.add_row(
            row["subnet"],
            row["task"],
            f"{row['params'] / 1e6:.2f}",
            f"{row['flops'] / 1e9:.3f}",
            f"{row['flops'] / 2e9:.3f}",
        )
    out.print(cost)


def _space_summary(sp: SearchSpace) -> dict:
    extremes = []
    for label, arch in (("min", sp.min()), ("max", sp.max())):
        for task in TASKS:
            extremes.append(
                {
                    "subnet": label,
                    "task": task,
                    "arch": str(arch),
                    "params": sp.params(arch, task),
                    "flops": sp.flops(arch, task),
                }
            )
    return {
        "name": sp.name,
        "size": sp.size(),
        "n_var": sp.n_var,
        "resolutions": [list(r) for r in sp.resolutions],
        "extremes": extremes,
    }


@app.command()
def arch(
    pick: Annotated[str, typer.Argument(help="min, max, random, or an arch .json file to check")],
    space_name: SpaceOpt = "alphanet",
    seed: Annotated[int, typer.Option(help="seed for `random`")] = 0,
    task: Annotated[str, typer.Option(help=f"head for params/FLOPs: {', '.join(TASKS)}")] = "saliency",
    save: Annotated[Path | None, typer.Option("--out", "-o", help="write the arch JSON here")] = None,
) -> None:
    """Make (min / max / random) or check (a JSON file) an arch; print its line, params and FLOPs."""
    with user_errors():
        sp = SearchSpace.load(space_name)
        check_task(task)
        chosen = _pick_arch(sp, pick, seed)
        if save is not None:
            atomic_write_json(save, sp.arch_to_dict(chosen))
        params, flops = sp.params(chosen, task), sp.flops(chosen, task)
    out.print(str(chosen), highlight=False)
    out.print(f"params {params / 1e6:.3f} M, FLOPs {flops / 1e9:.3f} G ({task} head)")
    if save is not None:
        out.print(f"wrote {save}")


def _pick_arch(sp: SearchSpace, pick: str, seed: int = 0) -> Arch:
    """min, max, random, an arch .json file, or an arch's one-line string."""
    if pick == "min":
        return sp.min()
    if pick == "max":
        return sp.max()
    if pick == "random":
        return sp.sample(np.random.default_rng(seed))
    if pick.endswith(".json") or Path(pick).exists():
        return sp.load_arch(pick)
    if "|" in pick:
        return sp.parse(pick)
    raise HwnasError(f"unknown arch '{pick}'; use min, max, random, a path to an arch .json file or an arch line")


# ---- devices, profile, lut -------------------------------------------------------------------
MeterOpt = Annotated[
    str | None, typer.Option(help="energy meter: auto, nvml, rapl, codecarbon or spec (default: the spec's)")
]


RemoteOpt = Annotated[
    str | None, typer.Option(help="measure on an agent (`hwnas agent` on the device), e.g. http://mac:8765")
]
TokenOpt = Annotated[str | None, typer.Option(help="the agent's token (default: $HWNAS_AGENT_TOKEN)")]


def _measurer(spec, remote: str | None, token: str | None):
    """Where the timings come from: this host, or the agent at `remote`."""
    from hwnas.measurer import LocalMeasurer

    if remote is None:
        return LocalMeasurer(spec)
    import os

    from hwnas.agent import TOKEN_ENV, RemoteMeasurer

    return RemoteMeasurer(remote, token=token or os.environ.get(TOKEN_ENV), device=spec)


def _energy_meter(spec, kind: str | None, region: str | None = None):
    from hwnas.energy import choose_meter

    return choose_meter(spec, kind=kind, region=region)


DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="device name in ./devices or a spec .toml path")]
DevicesDirOpt = Annotated[Path, typer.Option("--devices-dir", help="folder of device specs")]
RoundsOpt = Annotated[int, typer.Option(help="interleaved measurement rounds per model")]


@app.command()
def devices(devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR) -> None:
    """List the device specs and whether each can be measured on this host (and why not)."""
    with user_errors():
        names = device_names(devices_dir)
        if not names:
            raise HwnasError(f"no device specs (*.toml) in {devices_dir}/")
        specs = [load_device(n, devices_dir) for n in names]
    table = Table("device", "backend", "options", "runs here", "why not / what to do")
    for spec in specs:
        reason = spec.availability()
        opts = f"threads={spec.threads} {spec.precision}"
        if spec.backend == "onnxruntime":
            opts += f" {spec.provider}"
        if spec.backend == "coreml":
            opts += f" {spec.compute_units}"
        table.add_row(
            spec.name,
            spec.backend,
            opts,
            "[green]yes[/green]" if reason is None else "[red]no[/red]",
            "" if reason is None else escape(f"{reason}; profile it with `hwnas agent` on the target (--remote)"),
        )
    out.print(table)


def _resolutions(values: list[str] | None) -> list[tuple[int, int]] | None:
    if not values:
        return None
    parsed = []
    for value in values:
        parts = value.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise HwnasError(f"--resolution must look like 256x192 (width x height), got '{value}'")
        parsed.append((int(parts[0]), int(parts[1])))
    return parsed


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}", style="dim"),
        console=err,
        transient=True,
    )


@app.command()
def profile(
    device: DeviceOpt,
    space_name: SpaceOpt = "alphanet",
    task: Annotated[
        str, typer.Option(help=f"head whose blocks are profiled: {', '.join(TASKS)}, or a sod variant (sod/unet+focus)")
    ] = "saliency",
    resolution: Annotated[list[str] | None, typer.Option(help="WxH, repeatable; default: all of the space's")] = None,
    lut_out: Annotated[
        Path | None, typer.Option("--out", "-o", help="table path (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    rounds: RoundsOpt = 4,
    statistic: Annotated[
        str,
        typer.Option(
            help="what a row predicts with: median (over rounds of each round's median) or min (fastest call)"
        ),
    ] = DEFAULT_STATISTIC,
    energy: Annotated[
        bool, typer.Option("--energy", help="add each block's energy (measured by NVML/RAPL, else estimated)")
    ] = False,
    meter: MeterOpt = None,
    remote: RemoteOpt = None,
    token: TokenOpt = None,
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """Measure every block of the space on the device into a latency table (resumable)."""
    with user_errors():
        check_task(task)
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name)
        res = _resolutions(resolution)
        for r in res or []:
            sp.check_resolution(r)
        if rounds < 1:
            raise HwnasError(f"--rounds must be at least 1, got {rounds}")
        if statistic not in STATISTICS:
            raise HwnasError(f"unknown --statistic '{statistic}'; allowed: {', '.join(STATISTICS)}")
        path = lut_out or default_lut_path(spec.name, sp.name)
        measurer = _measurer(spec, remote, token)
        with _progress_bar() as bar:
            job = bar.add_task(f"profiling {spec.name}/{sp.name}", total=None, label="")

            def report(done: int, total: int, label: str) -> None:
                bar.update(job, completed=done, total=total, label=label[:48])

            chosen_meter = _energy_meter(spec, meter) if energy else None
            table = run_profile(
                spec,
                sp,
                task=task,
                resolutions=res,
                out=path,
                rounds=rounds,
                statistic=statistic,
                progress=report,
                energy=energy,
                meter=chosen_meter,
                measurer=measurer,
            )
    if table.energy_source is not None:
        label = "ESTIMATED" if table.energy_source.startswith("estimated") else "measured"
        out.print(f"energy column: {label} ({table.energy_source})", highlight=False)
    out.print(
        f"{len(table)} block signatures on {spec.name} ({table.meta['versions']}); "
        f"per-call overhead {table.overhead_ms * 1000:.1f} us; wrote {path}",
        highlight=False,
    )


lut_app = typer.Typer(help="Latency tables: validate against end-to-end measurements.", no_args_is_help=True)
app.add_typer(lut_app, name="lut")


@lut_app.command("validate")
def lut_validate(
    device: DeviceOpt,
    space_name: SpaceOpt = "alphanet",
    lut_path: Annotated[
        Path | None, typer.Option("--lut", help="table path (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    samples: Annotated[int, typer.Option(help="subnets to measure end to end (min and max included)")] = 20,
    seed: Annotated[int, typer.Option(help="seed for the random subnets and the calibration split")] = 0,
    resolution: Annotated[str | None, typer.Option(help="WxH: validate at this resolution only")] = None,
    report_out: Annotated[Path | None, typer.Option("--report", help="write the per-subnet report as JSON")] = None,
    rounds: RoundsOpt = 4,
    remote: RemoteOpt = None,
    token: TokenOpt = None,
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """Compare table predictions with end-to-end latency; fit and store the calibration."""
    with user_errors():
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name)
        path = lut_path or default_lut_path(spec.name, sp.name)
        table = LatencyTable.load(path, sp)
        res = _resolutions([resolution] if resolution else None)
        for r in res or []:
            sp.check_resolution(r)
        measurer = _measurer(spec, remote, token)
        for note in table.compatibility_warnings(spec.options(), measurer.versions()):
            err.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
        with _progress_bar() as bar:
            job = bar.add_task(f"end-to-end on {spec.name}", total=samples, label="")
            result = run_validate(
                spec,
                table,
                samples=samples,
                seed=seed,
                resolution=res[0] if res else None,
                rounds=rounds,
                progress=lambda d, n, label: bar.update(job, completed=d, total=n, label=""),
                measurer=measurer,
            )
        table.save(path)
        if report_out is not None:
            atomic_write_json(report_out, result.to_dict())
    figures = Table("subnets", "n", "MAPE %", "within 5%", "within 10%", "Kendall tau", "Spearman rho")
    for label, f in (
        ("all, raw sum", result.all_raw),
        ("held-out, before calibration", result.holdout_before),
        ("held-out, after calibration", result.holdout_after),
        *([("held-out, re-measured (half the rounds each)", result.repeatability)] if result.repeatability else []),
    ):
        figures.add_row(
            label,
            str(f.n),
            f"{f.mape:.1f}",
            f"{f.within_5:.0%}",
            f"{f.within_10:.0%}",
            f"{f.kendall_tau:.3f}",
            f"{f.spearman_rho:.3f}",
        )
    out.print(figures)
    if result.repeatability:
        out.print(
            f"the measurement itself: its two halves of rounds rank the held-out subnets with Kendall tau "
            f"{result.repeatability.kendall_tau:.3f}; no table can rank them better on this machine now",
            highlight=False,
        )
    cal = result.calibration
    out.print(
        f"calibration: measured = {cal.slope:.4f} x table + {cal.intercept_ms:.4f} ms "
        f"(fitted on {cal.fitted_on} subnets), stored in {sidecar_path(path)}",
        highlight=False,
    )


# ---- train -----------------------------------------------------------------------------------
train_app = typer.Typer(help="Train a supernet (sandwich rule, Self-KD) or one subnet.", no_args_is_help=True)
app.add_typer(train_app, name="train")

DataOpt = Annotated[str, typer.Option("--data", help="synthetic, digits, or a SALICON-layout folder")]
EpochsOpt = Annotated[int, typer.Option(help="epochs to train (a resumed run continues up to this many)")]
BatchOpt = Annotated[int, typer.Option(help="images per step and process")]
LrOpt = Annotated[float, typer.Option(help="SGD learning rate (SalNAS: 0.1 at batch 64)")]
T0Opt = Annotated[int, typer.Option("--t0", help="epochs between warm restarts of the cosine schedule")]
AlphaOpt = Annotated[float, typer.Option(help="weight left on the ground truth after epoch 1 (SalNAS Eq. 3)")]
SeedOpt = Annotated[int, typer.Option(help="seed of weights, data order and sampled subnets")]
MaxStepsOpt = Annotated[int, typer.Option(help="cap on steps per epoch (0: the whole split)")]
SizeOpt = Annotated[int, typer.Option(help="synthetic data: training images")]
ValSizeOpt = Annotated[int, typer.Option(help="synthetic data: validation images")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="ignore an existing checkpoint at --out and start over")]
TorchDeviceOpt = Annotated[str, typer.Option("--torch-device", help="where to train: cpu or cuda[:N]")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="mixed precision (CUDA only)")]
ClipOpt = Annotated[float, typer.Option(help="gradient-norm clipping (0: off)")]
TaskOpt = Annotated[str, typer.Option(help=f"head: {', '.join(TASKS)} (or a sod variant: sod/cfem, sod/unet, +focus)")]
FocusOpt = Annotated[bool, typer.Option("--focus", help="sod: FocusNet's FOCUS cascade (localization net + FRM)")]
AfeOpt = Annotated[bool, typer.Option("--afe/--no-afe", help="sod: the ascending CFEM chain (FocusNet Eq. 1-2)")]
CfemOpt = Annotated[bool, typer.Option("--cfem/--no-cfem", help="sod: CFEMs; --no-afe --no-cfem is the U-Net baseline")]


def _head_task(task: str, focus: bool, afe: bool, cfem: bool) -> str:
    """The task name with the SOD head's switches applied (FocusNet Table 2's rows)."""
    if not is_sod(check_task(task)):
        if focus or not (afe and cfem):
            raise HwnasError(f"--focus, --no-afe and --no-cfem switch parts of the sod head; --task is {task}")
        return task
    if afe and not cfem:
        raise HwnasError("AFE is a chain of CFEMs: --no-cfem needs --no-afe")
    head = SodHead.parse(task)
    decoder = head.decoder if (afe and cfem) else ("cfem" if cfem else "unet")
    return SodHead(decoder, head.focus or focus).task


def _train(
    model_factory,
    *,
    sp: SearchSpace,
    task: str,
    data_source: str,
    size: tuple[int, int],
    config,
    out_path: Path,
    fresh: bool,
    torch_device: str,
    train_size: int,
    val_size: int,
    title: str,
) -> None:
    from hwnas.data import load_data
    from hwnas.train.task import make_task
    from hwnas.train.trainer import EpochEvent, fit, init_distributed

    check_task(task)
    if torch_device != "cpu" and not torch_device.startswith("cuda"):
        raise HwnasError(f"--torch-device must be cpu or cuda[:N], got '{torch_device}'")
    config.validate()
    rank, world = init_distributed(torch_device)
    w, h = size
    data = load_data(data_source, task=task, size=(h, w), seed=config.seed, train_size=train_size, val_size=val_size)
    model = model_factory(data.num_classes)
    talk = rank == 0
    with _progress_bar() as bar:
        job = bar.add_task(title, total=None, label="")

        def report(event) -> None:
            if isinstance(event, EpochEvent):
                out.print(_epoch_line(event), highlight=False, soft_wrap=True)
                return
            bar.update(
                job,
                description=f"{title} epoch {event.epoch + 1}/{event.epochs}",
                completed=event.step,
                total=event.steps,
                label=f"loss {event.loss:.4f}  {event.images_per_s:.0f} img/s",
            )

        result = fit(
            model,
            space=sp,
            data=data,
            task=make_task(task, data.num_classes),
            config=config,
            out=out_path,
            resume=not fresh,
            device=torch_device,
            on_event=report if talk else None,
        )
    if talk:
        if result.resumed_from:
            out.print(f"resumed from epoch {result.resumed_from}", highlight=False)
        out.print(f"wrote {result.checkpoint} ({len(result.history)} epochs, {world} process(es))", highlight=False)


def _epoch_line(event) -> str:
    r = event.record
    parts = [
        f"epoch {event.epoch}/{event.epochs}",
        f"train loss {r['train_loss']:.4f}",
        f"val loss {r['val_loss']:.4f}",
    ]
    for name, scores in r["val"].items():
        shown = [k for k in ("cc", "nss", "kld", "top1", "sm", "wfm", "mae") if k in scores]
        parts.append(f"{name}: " + " ".join(f"{k} {scores[k]:.3f}" for k in shown))
    parts.append(f"{r['images_per_s']:.0f} img/s, {r['seconds']:.1f} s")
    if r.get("teacher_updated"):
        parts.append("teacher updated")
    return " | ".join(parts)


@train_app.command("supernet")
def train_supernet(
    space_name: SpaceOpt = "mini",
    task: TaskOpt = "saliency",
    focus: FocusOpt = False,
    afe: AfeOpt = True,
    cfem: CfemOpt = True,
    data: DataOpt = "synthetic",
    epochs: EpochsOpt = 3,
    selfkd: Annotated[bool, typer.Option("--selfkd", help="Self-KD teacher (SalNAS Algorithm 1)")] = False,
    inplace_kd: Annotated[bool, typer.Option(help="the largest subnet teaches the others")] = True,
    sandwich: Annotated[int, typer.Option(help="random subnets per step besides the largest and smallest")] = 2,
    batch_size: BatchOpt = 32,
    lr: LrOpt = 0.05,
    t0: T0Opt = 10,
    alpha: AlphaOpt = 0.5,
    grad_clip: ClipOpt = 5.0,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    train_size: SizeOpt = 512,
    val_size: ValSizeOpt = 128,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default runs/SPACE-TASK/supernet.pt)")
    ] = None,
    fresh: FreshOpt = False,
    torch_device: TorchDeviceOpt = "cpu",
    amp: AmpOpt = False,
    check_replicas: Annotated[
        bool, typer.Option("--check-replicas", help="under torchrun: verify after every step that all ranks agree")
    ] = False,
) -> None:
    """Train a weight-sharing supernet with the sandwich rule, inplace KD and optional Self-KD (resumable)."""
    from hwnas.train.trainer import TrainConfig, new_model

    with user_errors():
        sp = SearchSpace.load(space_name)
        task = _head_task(task, focus, afe, cfem)
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            t0=t0,
            grad_clip=grad_clip,
            sandwich=sandwich,
            inplace_kd=inplace_kd,
            method="selfkd" if selfkd else "baseline",
            alpha=alpha,
            seed=seed,
            amp=amp,
            max_steps=max_steps,
            check_replicas=check_replicas,
        )
        _train(
            lambda n: new_model(sp, task=task, num_classes=n, seed=seed),
            sp=sp,
            task=task,
            data_source=data,
            size=sp.max().resolution,
            config=config,
            out_path=ckpt or Path("runs") / f"{sp.name}-{task.replace('/', '-')}" / "supernet.pt",
            fresh=fresh,
            torch_device=torch_device,
            train_size=train_size,
            val_size=val_size,
            title="supernet",
        )


@train_app.command("selfkd")
def train_selfkd(
    arch_pick: Annotated[str, typer.Option("--arch", help="min, max, an arch .json file or an arch line")] = "min",
    space_name: SpaceOpt = "mini",
    task: TaskOpt = "saliency",
    focus: FocusOpt = False,
    afe: AfeOpt = True,
    cfem: CfemOpt = True,
    data: DataOpt = "synthetic",
    method: Annotated[str, typer.Option(help="selfkd, baseline (no KD), pkd or pskd (SalNAS Table 6)")] = "selfkd",
    init: Annotated[
        Path | None, typer.Option(help="inherit the subnet's weights from this supernet checkpoint")
    ] = None,
    epochs: EpochsOpt = 5,
    batch_size: BatchOpt = 32,
    lr: LrOpt = 0.05,
    t0: T0Opt = 10,
    alpha: AlphaOpt = 0.5,
    grad_clip: ClipOpt = 5.0,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    train_size: SizeOpt = 512,
    val_size: ValSizeOpt = 128,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default runs/SPACE-TASK/subnet-METHOD.pt)")
    ] = None,
    fresh: FreshOpt = False,
    torch_device: TorchDeviceOpt = "cpu",
    amp: AmpOpt = False,
    teacher_precision: Annotated[
        str,
        typer.Option(
            help="the teacher's predictions (selfkd, pskd): fp32, bf16, or auto = bf16 where the device "
            "has native bf16 (AMX / AVX512-BF16 CPUs, bf16 GPUs)"
        ),
    ] = "auto",
) -> None:
    """Train one subnet with Self-KD (SalNAS Algorithm 1) or a comparison method (resumable)."""
    from hwnas.train.trainer import TrainConfig, initial_subnet

    with user_errors():
        sp = SearchSpace.load(space_name)
        task = _head_task(task, focus, afe, cfem)
        chosen = _pick_arch(sp, arch_pick, seed)
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            t0=t0,
            grad_clip=grad_clip,
            method=method,
            alpha=alpha,
            seed=seed,
            amp=amp,
            max_steps=max_steps,
            teacher_precision=teacher_precision,
        )
        _train(
            lambda n: initial_subnet(sp, chosen, task=task, num_classes=n, seed=seed, init=init),
            sp=sp,
            task=task,
            data_source=data,
            size=chosen.resolution,
            config=config,
            out_path=ckpt or Path("runs") / f"{sp.name}-{task.replace('/', '-')}" / f"subnet-{method}.pt",
            fresh=fresh,
            torch_device=torch_device,
            train_size=train_size,
            val_size=val_size,
            title=method,
        )


@train_app.command("postprocess")
def train_postprocess(
    supernet: Annotated[Path, typer.Option(help="the supernet checkpoint the search scored on (or its adapted one)")],
    arch_pick: Annotated[str, typer.Option("--arch", help="the chosen subnet: best.json, min, max or an arch line")],
    max_epochs: Annotated[int, typer.Option(help="phase 1: most fine-tuning epochs to try")] = 10,
    patience: Annotated[int, typer.Option(help="phase 1: stop after this many epochs without improvement")] = 3,
    selfkd: Annotated[bool, typer.Option("--selfkd", help="phase 2 with Self-KD (SalNAS Algorithm 1)")] = False,
    batch_size: BatchOpt = 32,
    lr: Annotated[float, typer.Option(help="SGD learning rate of the fine-tune")] = 0.01,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    data: Annotated[str | None, typer.Option(help="data folder (default: what the supernet trained on)")] = None,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default: ARCH-postprocessed.pt)")
    ] = None,
) -> None:
    """NATv2 post-processing: find the best epoch count on val, fine-tune on train+val, report the test score."""
    from hwnas.train.checkpoint import checkpoint_space, load_checkpoint
    from hwnas.train.postprocess import post_process
    from hwnas.train.trainer import EpochEvent

    with user_errors():
        sp = checkpoint_space(load_checkpoint(supernet), supernet)
        chosen = _pick_arch(sp, arch_pick, seed)
        stem = Path(arch_pick).stem if arch_pick.endswith(".json") else "subnet"
        path = (
            ckpt or (Path(arch_pick).parent if arch_pick.endswith(".json") else Path(".")) / f"{stem}-postprocessed.pt"
        )
        with _progress_bar() as bar:
            job = bar.add_task("fine-tune", total=None, label="")

            def report(event) -> None:
                if isinstance(event, EpochEvent):
                    out.print(_epoch_line(event), highlight=False, soft_wrap=True)
                else:
                    bar.update(job, completed=event.step, total=event.steps, label=f"loss {event.loss:.4f}")

            result = post_process(
                supernet, chosen, space=sp, out=path, max_epochs=max_epochs, patience=patience,
                method="selfkd" if selfkd else "baseline", batch_size=batch_size, lr=lr, seed=seed,
                max_steps=max_steps, data=data, on_event=report,
            )  # fmt: skip
    m = result.metric
    out.print(
        "phase 1 (val): " + ", ".join(f"epoch {r['epoch']} {m} {r[m]:.4f}" for r in result.phase1), highlight=False
    )
    out.print(f"best epoch count: {result.best_epochs}; phase 2 fine-tuned that long on train+val", highlight=False)
    out.print(
        f"test {m}: {result.test[m]:.4f} after post-processing, {result.inherited[m]:.4f} inherited from the supernet",
        highlight=False,
    )
    out.print(f"wrote {result.checkpoint} and {result.report}", highlight=False, soft_wrap=True)


# ---- search ----------------------------------------------------------------------------------
@app.command()
def search(
    device: DeviceOpt,
    budget: Annotated[list[str], typer.Option(help="e.g. 30ms, 2mJ, 300MFLOPs, 5M (params), 20MB; repeatable")],
    space_name: SpaceOpt = "alphanet",
    supernet: Annotated[Path | None, typer.Option(help="trained supernet checkpoint (hwnas train supernet)")] = None,
    proxy: Annotated[str | None, typer.Option(help="no supernet: rank by flops or params instead (a proxy)")] = None,
    lut_path: Annotated[Path | None, typer.Option("--lut", help="table (default lut/DEVICE-SPACE.parquet)")] = None,
    algo: Annotated[
        str,
        typer.Option(
            help="mosegnas (surrogate-assisted), natv2 (archive-managed), pnag (budget-conditioned generator), "
            "nsga2, evolution or random"
        ),
    ] = "mosegnas",
    evals: Annotated[int, typer.Option(help="subnets to evaluate on the supernet, in all")] = 64,
    predictor: Annotated[
        str | None,
        typer.Option(
            help="accuracy predictor: ranknet (mosegnas default), lgbm (natv2 default), gp, svr, ridge, knn, "
            "cart; natv2 also auto (best k-fold Kendall tau)"
        ),
    ] = None,
    objectives: Annotated[str | None, typer.Option(help="costs to trade against accuracy, e.g. latency,params")] = None,
    adapt_epochs: Annotated[
        int,
        typer.Option(
            help="natv2: fine-tune the supernet this many epochs on front subnets between iterations "
            "(saved as supernet-adapted.pt in --out; 0: off)"
        ),
    ] = 0,
    data: Annotated[str | None, typer.Option(help="validation data (default: what the supernet trained on)")] = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="folder (default runs/SPACE-search-DEVICE)")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="ignore an archive.json in --out instead of resuming it")
    ] = False,
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """Search the most accurate subnets under a budget; write archive.json, best.json and pareto.png."""
    from hwnas.search import Archive, Costs, parse_budgets
    from hwnas.search import search as run_search
    from hwnas.search.evaluator import ProxyEvaluator, SupernetEvaluator
    from hwnas.search.plot import pareto_png

    with user_errors():
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name)
        budgets = parse_budgets(budget)
        path = lut_path or default_lut_path(spec.name, sp.name)
        table = LatencyTable.load(path, sp)
        built_for = table.meta.get("device", {}).get("name")
        if built_for != spec.name:
            raise HwnasError(f"latency table {path} was built for device '{built_for}', not '{spec.name}'")
        if supernet is None and proxy is None:
            raise HwnasError(
                "search needs a trained supernet to score subnets: train one with `hwnas train supernet --space "
                f"{sp.name}` and pass --supernet runs/{sp.name}-saliency/supernet.pt, or rank by --proxy flops|params"
            )
        allowed = [sp.resolutions.index(tuple(r)) for r in table.meta["resolutions"] if tuple(r) in sp.resolutions]
        task = table.meta["task"]
        if supernet is not None:
            accuracy = SupernetEvaluator(supernet, sp, data=data)
            if accuracy.task_name != task:
                raise HwnasError(f"the supernet is a {accuracy.task_name} model but the table is for the {task} head")
        costs = Costs(sp, task=task, table=table)
        if supernet is None:
            accuracy = ProxyEvaluator(proxy, costs, sp)
        folder = out_dir or Path("runs") / f"{sp.name}-search-{spec.name}"
        previous = None
        if not fresh and (folder / "archive.json").exists():
            previous = Archive.load(folder / "archive.json", sp)
        resumed = len(previous) if previous is not None else 0
        with _progress_bar() as bar:
            job = bar.add_task(f"{algo} on {spec.name}", total=None, label="")

            def report(done: int, total: int, archive) -> None:
                archive.save(folder / "archive.json")  # an interrupted search resumes from here
                bar.update(job, completed=done, total=total, label=f"{len(archive)} subnets evaluated")

            archive = run_search(
                sp,
                accuracy=accuracy,
                costs=costs,
                budgets=budgets,
                algorithm=algo,
                evaluations=evals,
                seed=seed,
                objectives=objectives.split(",") if objectives else None,
                allowed_resolutions=allowed,
                progress=report,
                meta={"device": spec.name, "table": str(path), "supernet": str(supernet or "")},
                options={
                    **({"predictor": predictor} if predictor else {}),
                    **({"cache": folder / "pnag.pt"} if algo == "pnag" else {}),
                    **(
                        {"adapt_epochs": adapt_epochs, "adapt_out": folder / "supernet-adapted.pt"}
                        if adapt_epochs
                        else {}
                    ),
                },
                resume=previous,
            )
        if resumed:
            err.print(
                f"resumed {folder / 'archive.json'}: {resumed} subnets were already evaluated",
                highlight=False,
                soft_wrap=True,
            )
        for note in archive.meta.get("warnings", []):
            err.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
        chosen = archive.pick(budgets)
        archive.save(folder / "archive.json")
        atomic_write_json(folder / "best.json", sp.arch_to_dict(chosen.arch))
        pareto_png(
            archive,
            budgets=budgets,
            chosen=chosen,
            path=folder / "pareto.png",
            title=f"{sp.name} on {spec.name}, {algo}, budget {', '.join(map(str, budgets))}",
        )
    metric = archive.meta["metric"]
    label = f"{metric} (PROXY, not accuracy)" if metric.startswith("proxy") else f"{metric} (supernet)"
    front = Table("", label, *(f"{o.name} ({o.unit})" for o in archive.objectives[1:]), "arch")
    knees = {str(r.arch) for r in archive.trade_offs()}
    for rec in archive.front():
        mark = ("[bold orange3]*[/]" if rec is chosen else "") + ("k" if str(rec.arch) in knees else "")
        front.add_row(
            mark,
            f"{rec.values['accuracy']:.4f}",
            *(o.show(rec.values[o.name]).split()[0] for o in archive.objectives[1:]),
            str(rec.arch),
        )
    out.print(front)
    out.print("* chosen, k a high trade-off point of the front", style="dim")
    for g in archive.meta.get("generations", []):
        out.print(
            f"generation {g['generation']}: {g['evaluated']} evaluated, hypervolume {g['hypervolume']:.4g}, "
            f"predictor Kendall tau on the new subnets {g['predictor_tau']:.3f}",
            highlight=False,
        )
    costs_line = ", ".join(o.show(chosen.values[o.name]) for o in archive.objectives[1:])
    out.print(
        f"chosen: {label} {chosen.values['accuracy']:.4f}, {costs_line} under {', '.join(map(str, budgets))}",
        highlight=False,
    )
    out.print(str(chosen.arch), highlight=False, soft_wrap=True)
    out.print(f"hypervolume {archive.meta['hypervolume']:.4g} (reference {archive.meta['reference']})", highlight=False)
    if "adapted_supernet" in archive.meta:
        out.print(
            f"scores come from the adapted supernet {archive.meta['adapted_supernet']}: "
            "export and post-process from it",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"wrote {folder}/archive.json, best.json, pareto.png", highlight=False)


# ---- agent -----------------------------------------------------------------------------------
@app.command()
def agent(
    host: Annotated[str, typer.Option(help="address to listen on (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8765,
    token: Annotated[str | None, typer.Option(help="token hosts must send (default: $HWNAS_AGENT_TOKEN)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the token from this file")] = None,
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """Serve profiling jobs for hosts (`hwnas profile --remote`): run this on the device."""
    import os

    from hwnas.agent import TOKEN_ENV, resolve_token, serve

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
        out.print(f"token (pass it to the host as --token or {TOKEN_ENV}): {secret}", highlight=False)
    serve(host=host, port=port, token=secret, devices_dir=devices_dir)


# ---- report ----------------------------------------------------------------------------------
@app.command()
def report(
    device: DeviceOpt,
    arch_pick: Annotated[str, typer.Option("--arch", help="min, max, random or an arch .json (best.json)")],
    space_name: SpaceOpt = "alphanet",
    task: Annotated[str, typer.Option(help="head: saliency or classification")] = "saliency",
    supernet: Annotated[Path | None, typer.Option(help="take the subnet's weights from this checkpoint")] = None,
    lut_path: Annotated[
        Path | None, typer.Option("--lut", help="table for the predicted latency (default lut/DEVICE-SPACE.parquet)")
    ] = None,
    batch: Annotated[int, typer.Option(help="batch of the energy run (SalNAS: 64)")] = 64,
    passes: Annotated[int, typer.Option(help="forward passes of the energy run (SalNAS: 200)")] = 200,
    region: Annotated[str | None, typer.Option(help="grid region, ISO 3166 alpha-3 (default: the spec's)")] = None,
    meter: MeterOpt = None,
    rounds: RoundsOpt = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON")] = None,
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """SalNAS's seven measures for one subnet: FLOPs, params, size, emission, power, latency, throughput."""
    from hwnas.report import as_rows, subnet_report

    with user_errors():
        spec = load_device(device, devices_dir)
        sp = SearchSpace.load(space_name)
        check_task(task)
        chosen = _pick_arch(sp, arch_pick)
        path = lut_path or default_lut_path(spec.name, sp.name)
        table = LatencyTable.load(path, sp) if lut_path is not None or path.exists() else None
        subnet, weights = None, "untrained (latency and energy do not depend on weight values)"
        if supernet is not None:
            from hwnas.exporter.source import load_source

            subnet, source = load_source(supernet, chosen)
            weights = f"{supernet} ({source.bn})"
        with out.status(f"measuring {chosen} on {spec.name}"):
            result = subnet_report(
                spec,
                sp,
                chosen,
                task=task,
                subnet=subnet,
                weights=weights,
                table=table,
                batch=batch,
                passes=passes,
                region=region,
                meter=meter,
                rounds=rounds,
            )
        if json_out is not None:
            atomic_write_json(json_out, result.to_dict())
    out.print(f"{result.arch} on {result.device}; weights: {result.weights}", highlight=False, soft_wrap=True)
    shown = Table("measure", "value", "unit", "source")
    for name, value, unit, source in as_rows(result):
        estimated = source.startswith("estimated")
        shown.add_row(name, value, unit, f"[yellow]ESTIMATE[/] {escape(source)}" if estimated else escape(source))
    out.print(shown)
    if json_out is not None:
        out.print(f"wrote {json_out}", highlight=False)


# ---- export ----------------------------------------------------------------------------------
@app.command()
def export(
    supernet: Annotated[
        Path, typer.Option("--supernet", "--checkpoint", help="checkpoint: a supernet, or one subnet (train selfkd)")
    ],
    arch_pick: Annotated[
        str | None, typer.Option("--arch", help="min, max or an arch .json (best.json); a subnet checkpoint's own")
    ] = None,
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
    devices_dir: DevicesDirOpt = DEFAULT_DEVICES_DIR,
) -> None:
    """Export a subnet to runtime artifacts with manifests; verify numerics and latency where they run."""
    from hwnas.exporter import export as run_export

    with user_errors(), out.status("exporting") as status:
        report = run_export(
            supernet,
            arch_pick,
            formats=formats,
            device=device,
            out=out_dir,
            name=name,
            verify=verify,
            exporter=exporter,
            opset=opset,
            data=data,
            lut=lut_path,
            rounds=rounds,
            devices_dir=devices_dir,
            progress=lambda label: status.update(label),
        )
    out.print(f"{report.source.arch} ({report.source.bn})", highlight=False, soft_wrap=True)
    results = Table("format", "device", "max abs error (tol)", "latency", "verification")
    for item in report.items:
        v = item.verification
        numerics = f"{v.numerics.max_abs:.1e} ({v.numerics.atol:.0e})" if v.numerics else "-"
        colour = {"verified": "green", "failed": "red"}.get(v.status, "yellow")
        speed = v.speed.line() if v.speed else "-"
        results.add_row(item.format, item.device, numerics, speed, f"[{colour}]{v.status}[/]")
    out.print(results)
    for item in report.items:
        v = item.verification
        lines = [f"{v.status}: {v.reason}"] if v.reason else []
        if v.speed and v.speed.table_ms is None:
            lines.append(f"latency: {v.speed.table}")
        for line in [*lines, *(n for n in item.notes if n != v.reason)]:
            out.print(f"{item.format}: {escape(line)}", style="dim", highlight=False, soft_wrap=True)
        files = ", ".join(p.name for p in [*item.paths, item.manifest])
        out.print(f"{item.format}: wrote {files}", style="dim", highlight=False, soft_wrap=True)
    out.print(f"wrote {len(report.items)} artifact(s) to {report.folder}/", highlight=False)
    if report.failed:
        names = ", ".join(i.format for i in report.failed)
        err.print(f"[red]error:[/red] verification failed for {names}; see the manifests", highlight=False)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
