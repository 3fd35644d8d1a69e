"""`hwnas convert alphanet|salnas`: the authors' checkpoints as hwnas checkpoints (`hwnas.nn.authors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas.cli.common import say, user_errors

app = typer.Typer(help="Bring the authors' checkpoints in: AlphaNet/AttentiveNAS ImageNet supernets, SalNAS.")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="the hwnas checkpoint to write (.pt)")]
ConvertSpaceOpt = Annotated[
    str | None,
    typer.Option("--space", "-s", help="the space it was trained as: preset or .toml (default: alphanet, "
                 "or alphanet-imagenet for --task classification)"),
]  # fmt: skip
ArchOpt = Annotated[
    str | None,
    typer.Option(help="write the subnet of this arch (min, max, an arch line or .json, or a JSON of the "
                 "authors' subnet settings) with its stored weights and BN statistics"),
]  # fmt: skip


@app.command("alphanet")
def alphanet(
    checkpoint: Annotated[Path, typer.Argument(help="AlphaNet / AttentiveNAS supernet checkpoint (.pth/.pth.tar)")],
    out: OutOpt,
    task: Annotated[str, typer.Option(help="saliency (encoder across, decoder fresh) or classification")] = "saliency",
    space: ConvertSpaceOpt = None,
    arch: ArchOpt = None,
) -> None:
    """An AlphaNet or AttentiveNAS ImageNet supernet as an hwnas supernet: the encoder exactly; with
    --task classification the feature mix and classifier too."""
    with user_errors():
        _run(checkpoint, out, expect="alphanet", task=task, space=space, arch=arch)


@app.command("salnas")
def salnas(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint of the authors' SalNAS code ({'student': ...})")],
    out: OutOpt,
    space: ConvertSpaceOpt = None,
    arch: ArchOpt = None,
) -> None:
    """A SalNAS saliency supernet (encoder and decoder) as an hwnas saliency supernet or subnet."""
    with user_errors():
        _run(checkpoint, out, expect="salnas", task="saliency", space=space, arch=arch)


def _run(checkpoint: Path, out: Path, **kwargs) -> None:
    from hwnas.nn.authors import convert_checkpoint

    done = convert_checkpoint(checkpoint, out, **kwargs)
    c = done.conversion
    say(
        f"read {checkpoint}: {done.layout} layout, {c.loaded} tensors taken, {c.dropped} of theirs left out "
        "(per-resolution BN trackers, shortcut convs that never run, another task's head)"
    )
    if c.fresh:
        parts = sorted({key.split(".")[0] for key in c.fresh})
        say(f"initialised fresh ({len(c.fresh)} tensors): {', '.join(parts)}")
    what = f"subnet {done.arch}" if done.arch is not None else "supernet"
    say(f"wrote {done.out}: a {c.task} {what} on space '{c.space.name}'")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="convert")
