"""What every verb shares: the consoles, error and interrupt handling, the progress bar, and the
options that several verbs take. Nothing here imports torch, so `hwnas --help` stays fast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from hwnas.errors import HwnasError

out = Console()
err = Console(stderr=True)

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)

SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space", "-s", help="preset name or path to a space .toml (default: the checkpoint's, else alphanet)"
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", "-d", help="device name (packaged, or in ./devices) or a spec .toml path")
]
DevicesDirOpt = Annotated[
    Path | None, typer.Option("--devices-dir", help="folder of device specs read before the packaged ones")
]
RoundsOpt = Annotated[int, typer.Option(help="interleaved measurement rounds per model")]
SeedOpt = Annotated[int, typer.Option(help="seed of weights, data order and sampled subnets")]
MeterOpt = Annotated[
    str | None, typer.Option(help="energy meter: auto, nvml, rapl, codecarbon or spec (default: the spec's)")
]
RemoteOpt = Annotated[
    str | None, typer.Option(help="measure on an agent (`hwnas agent` on the device), e.g. http://mac:8765")
]
TokenOpt = Annotated[str | None, typer.Option(help="the agent's token (default: $HWNAS_AGENT_TOKEN)")]
CheckpointOpt = Annotated[
    Path, typer.Option("--supernet", "--checkpoint", help="checkpoint: a supernet, or one subnet (train selfkd)")
]
TorchDeviceOpt = Annotated[
    str, typer.Option("--torch-device", help="where torch runs the network: cpu, cuda, cuda:N or mps")
]
EvalBatchOpt = Annotated[
    int,
    typer.Option("--batch-size", help="images per prediction batch (speed and memory only; BN recalibration keeps 64)"),
]
ArchPickOpt = Annotated[
    str | None,
    typer.Option("--arch", help="min, max, random, an arch line or .json (best.json); a subnet checkpoint's own"),
]


def flag(*names: str, help: str) -> typer.models.OptionInfo:  # noqa: A002 - typer's own word
    """A boolean switch, shown in help without a type placeholder."""
    return typer.Option(*names, help=help, metavar="")


@contextlib.contextmanager
def user_errors(resume: str | None = None) -> Iterator[None]:
    """Library errors become one red line and exit code 2; Ctrl-C says what was kept and, for a
    resumable verb, that running the same command again resumes (`resume` names what it resumes)."""
    try:
        yield
    except HwnasError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        hint = f"; run the same command again to resume {resume}" if resume else ""
        err.print(f"\n[yellow]interrupted[/yellow]{escape(hint)}", highlight=False, soft_wrap=True)
        raise typer.Exit(INTERRUPTED) from None


class LazyProgress:
    """A rich progress bar that appears at its first update: a verb that fails its checks before any
    work prints its one error line and nothing else (a started bar leaves a blank line behind)."""

    def __init__(self, console: Console | None = None) -> None:
        # Fits 80 columns: the counts and the time left keep their width, the description is cut
        # to 24 characters and the label (a block name, a round) to what is left, with an ellipsis.
        console = console or err
        fixed = 24 + 16 + 9 + 7 + 5  # description, bar, counts, time left, the gaps between the columns
        self._bar = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, max_width=24)),
            BarColumn(bar_width=16),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=9)),
            TimeRemainingColumn(),
            TextColumn(
                "{task.fields[label]}",
                style="dim",
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=max(10, console.width - fixed)),
            ),
            console=console,
            transient=True,
        )
        self._started = False

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self._bar.stop()

    def add_task(self, description: str, **fields):
        return self._bar.add_task(description, start=True, **fields)

    def update(self, task, **fields) -> None:
        if not self._started:
            self._bar.start()
            self._started = True
        self._bar.update(task, **fields)

    def renderable(self):
        """What the bar shows now (tests render it at a given width)."""
        return self._bar.get_renderable()

    def counter(self, label: str, total: int):
        """A new bar of `total` steps and the function that advances it by n (a library's progress)."""
        task = self.add_task(label, total=total, label="")
        return lambda n: self.update(task, advance=n)


def check_early(
    *,
    space: str | None = None,
    devices: list[str] | tuple[str, ...] = (),
    devices_dir: Path | None = None,
    resolutions: list[str] | None = None,
    task: str | None = None,
    budgets: list[str] | None = None,
    torch_device: str | None = None,
    batch_size: int | None = None,
) -> None:
    """Check the flags a verb shares with the library's own light checks (space presets, device
    specs, resolutions, task names, budgets, `--torch-device` as text, `--batch-size`) before the
    verb imports torch: a mistyped flag answers in a fraction of a start-up. The library checks them
    again where it uses them (same functions)."""
    from hwnas.hardware.device import load_device
    from hwnas.space import SearchSpace
    from hwnas.space.arch import parse_resolution
    from hwnas.space.tasks import check_task

    with user_errors():
        if torch_device is not None:
            from hwnas.torch_device import check_torch_device

            check_torch_device(torch_device)
        if batch_size is not None and batch_size < 1:
            raise HwnasError(f"--batch-size must be at least 1, got {batch_size}")
        if task is not None:
            check_task(task)
        if budgets:
            from hwnas.search.budget import parse_budgets

            parse_budgets(budgets)
        sp = SearchSpace.load(space) if space is not None and space != "nb201" else None
        for r in resolutions or []:
            resolution = parse_resolution(r)
            if sp is not None:
                sp.check_resolution(resolution)
        for device in devices:
            load_device(device, devices_dir)


def progress_bar() -> LazyProgress:
    return LazyProgress()


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str, **kwargs) -> None:
    """One plain line on stdout (no rich highlighting, no wrapping mid-path)."""
    out.print(message, highlight=False, soft_wrap=True, **kwargs)
