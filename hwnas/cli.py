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
from rich.table import Table

from hwnas.errors import HwnasError
from hwnas.io import atomic_write_json
from hwnas.space import TASKS, SearchSpace

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
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
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
        if task not in TASKS:
            raise HwnasError(f"unknown --task '{task}'; allowed: {', '.join(TASKS)}")
        if pick == "min":
            chosen = sp.min()
        elif pick == "max":
            chosen = sp.max()
        elif pick == "random":
            chosen = sp.sample(np.random.default_rng(seed))
        elif pick.endswith(".json") or Path(pick).exists():
            chosen = sp.load_arch(pick)
        else:
            raise HwnasError(f"unknown arch '{pick}'; use min, max, random or a path to an arch .json file")
        if save is not None:
            atomic_write_json(save, sp.arch_to_dict(chosen))
        params, flops = sp.params(chosen, task), sp.flops(chosen, task)
    out.print(str(chosen), highlight=False)
    out.print(f"params {params / 1e6:.3f} M, FLOPs {flops / 1e9:.3f} G ({task} head)")
    if save is not None:
        out.print(f"wrote {save}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
