"""`hwnas space` and `hwnas arch`: look at a search space and make or check an arch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hwnas.cli.common import SpaceOpt, out, say, user_errors
from hwnas.files import atomic_write_json
from hwnas.space import DEFAULT_SPACE, SearchSpace
from hwnas.space.tasks import TASKS


def space(
    name: Annotated[str, typer.Argument(help="preset name or path to a space .toml")] = DEFAULT_SPACE,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON", metavar="")] = False,
) -> None:
    """Show a search space: its choices, size, and the min/max subnets' params and FLOPs."""
    with user_errors():
        sp = SearchSpace.load(name)
        summary = space_summary(sp)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]{sp.name}[/bold]: {sp.description}")
    say(f"distinct subnets: {sp.size():,} (~10^{math.log10(sp.size()):.1f}); encoded variables: {sp.n_var}")
    say("resolutions (W x H): " + ", ".join(f"{w}x{h}" for w, h in sp.resolutions))
    if sp.residual:
        out.print(_residual_table(sp))
    else:
        out.print(_mbconv_table(sp))
    cost = Table("subnet", "head", "params (M)", "FLOPs (G)", "MACs (G)")
    for row in summary["extremes"]:
        cost.add_row(
            row["subnet"], row["task"], f"{row['params'] / 1e6:.2f}", f"{row['flops'] / 1e9:.3f}",
            f"{row['flops'] / 2e9:.3f}",
        )  # fmt: skip
    out.print(cost)


def _residual_table(sp: SearchSpace) -> Table:
    """MoSegNAS's structure: the stem's two genes, each stage's depth, width and per-layer mids."""
    pool = ", then a 3x3/2 max pool" if sp.stem.pool else ""
    table = Table(
        "block", "widths", "depths", "kernels", "mids", "stride", "genes",
        title=f"{sp.block} layers ({sp.stages[0].act}); mids: each layer's intermediate width; stem: one conv{pool}",
    )  # fmt: skip
    table.add_row("stem", _listed(sp.stem.widths), "-", _listed(sp.stem.kernels), "-", str(sp.stem.stride), "2")
    for i, st in enumerate(sp.stages, start=1):
        table.add_row(
            f"stage {i}", _listed(st.widths), _listed(st.depths), "3", _listed(st.expansions), str(st.stride),
            str(2 + max(st.depths)),
        )  # fmt: skip
    table.add_row("BiSeNet heads", "-", "-", "-", "-", "-", "0")
    return table


def _listed(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


def _mbconv_table(sp: SearchSpace) -> Table:
    table = Table("block", "widths", "depths", "kernels", "expansions", "SE", "stride", "act")
    table.add_row(
        "stem", str(list(sp.stem.widths)), "-", str(sp.stem.kernel), "-", "-", str(sp.stem.stride), sp.stem.act
    )
    for i, st in enumerate(sp.stages, start=1):
        table.add_row(
            f"MBConv-{i}", str(list(st.widths)), str(list(st.depths)), str(list(st.kernels)),
            str(list(st.expansions)), "Y" if st.se else "N", str(st.stride), st.act,
        )  # fmt: skip
    last = str(list(sp.last.widths)) if sp.last.expand is None else f"{sp.last.expand} x MBConv-{len(sp.stages)}"
    table.add_row("last conv", last, "-", "1", "-", "-", "1", sp.last.act)
    if sp.last.mix:
        table.add_row("feature mix", str(list(sp.last.mix)), "-", "1", "-", "-", "1", sp.last.act)
    return table


def heads(sp: SearchSpace) -> tuple[str, ...]:
    """The heads a space's subnets take: a feature-mix space is a classifier's; a residual space
    (MoSegNAS's) has a classifier and BiSeNet's segmentation heads."""
    if sp.last.mix:
        return ("classification",)
    return ("classification", "segmentation") if sp.residual else TASKS


def space_summary(sp: SearchSpace) -> dict:
    extremes = [
        {"subnet": label, "task": task, "arch": str(a), "params": sp.params(a, task), "flops": sp.flops(a, task)}
        for label, a in (("min", sp.min()), ("max", sp.max()))
        for task in heads(sp)
    ]
    return {
        "name": sp.name,
        "size": sp.size(),
        "n_var": sp.n_var,
        "resolutions": [list(r) for r in sp.resolutions],
        "extremes": extremes,
    }


def arch(
    pick: Annotated[str, typer.Argument(help="min, max, random, an arch line, or an arch .json file to check")],
    space_name: SpaceOpt = None,
    seed: Annotated[int, typer.Option(help="seed for `random`")] = 0,
    task: Annotated[
        str | None,
        typer.Option(
            help=f"head for params/FLOPs: {', '.join(TASKS)} [default: saliency; segmentation in a residual space]"
        ),
    ] = None,
    save: Annotated[Path | None, typer.Option("--out", "-o", help="write the arch JSON here")] = None,
) -> None:
    """Make (min / max / random) or check (a JSON file) an arch; print its line, params and FLOPs."""
    from hwnas.nn.authors import authors_params

    with user_errors():
        sp = SearchSpace.load(space_name or DEFAULT_SPACE)
        chosen = sp.pick(pick, seed)
        task = task or ("segmentation" if sp.residual else "saliency")
        params, flops = sp.params(chosen, task), sp.flops(chosen, task)  # checks the task before any file
        theirs = authors_params(sp, chosen, task)
        if save is not None:
            atomic_write_json(save, sp.arch_to_dict(chosen))
    say(str(chosen))
    say(f"params {params / 1e6:.3f} M, FLOPs {flops / 1e9:.3f} G ({task} head)")
    if not sp.residual:
        say(f"params as the authors' code counts them: {theirs / 1e6:.3f} M (with the 1x1 convs their ShortcutLayer "
            "allocates but never runs where a shortcut is the identity)")  # fmt: skip
    if save is not None:
        say(f"wrote {save}")


def register(app: typer.Typer) -> None:
    app.command()(space)
    app.command()(arch)
