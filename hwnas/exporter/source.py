"""Where an export starts: a checkpoint and an arch, turned into the static subnet to convert.

A supernet's subnet is extracted with plain layers (`Supernet.extract`) and its BN statistics are
re-estimated exactly as `hwnas search` scored it (the checkpoint's `bn_batches` training batches of
its own data, `hwnas.train.evaluate.recalibrated_subnet`), so the artifact computes what the search
measured. A subnet checkpoint (`hwnas train selfkd`) is exported with its own statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.data.split import IMAGENET_MEAN, IMAGENET_STD
from hwnas.errors import ArchError, HwnasError
from hwnas.space import Arch, SearchSpace
from hwnas.train.checkpoint import bn_batches, build_model, checkpoint_data, checkpoint_space, file_digest
from hwnas.train.checkpoint import load_checkpoint as read_checkpoint
from hwnas.train.evaluate import recalibrated_subnet

EXTREMES = ("min", "max")


@dataclass(frozen=True)
class Source:
    """The checkpoint behind an export and the arch taken from it (what a manifest records)."""

    checkpoint: Path
    sha256: str
    kind: str
    epoch: int
    task: str
    num_classes: int
    space: SearchSpace
    arch: Arch
    label: str
    bn: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data: dict[str, Any]


def open_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Any], SearchSpace]:
    data = read_checkpoint(checkpoint)
    return data, checkpoint_space(data, checkpoint)


def resolve_arch(space: SearchSpace, arch: str | Path | Arch | None, data: dict[str, Any], path: Path) -> Arch:
    """`min` / `max` / `random`, an arch line, an Arch JSON file, an `Arch`, or None (a subnet
    checkpoint's own arch)."""
    own = space.arch_from_dict(data["arch"]) if data["kind"] == "subnet" else None
    if arch is None:
        if own is None:
            raise HwnasError(f"{path} holds a supernet: pass --arch (min, max or an arch .json such as best.json)")
        return own
    if isinstance(arch, Arch):
        chosen = space.validate(arch)
    elif str(arch) in (*EXTREMES, "random") or "|" in str(arch):
        chosen = space.pick(str(arch))  # random: seed 0, as `hwnas arch random` and `hwnas report`
    else:
        try:
            chosen = space.load_arch(arch)
        except ArchError as exc:
            raise ArchError(f"arch {arch} does not fit the checkpoint's space '{space.name}': {exc}") from None
    if own is not None and chosen != own:
        raise HwnasError(f"{path} holds the single subnet '{own}'; it cannot export '{chosen}'")
    return chosen


def arch_label(arch: str | Path | Arch | None) -> str:
    """A short name for file names: min, max, the arch file's stem, or 'subnet'."""
    if arch is None or isinstance(arch, Arch):
        return "subnet"
    if str(arch) in (*EXTREMES, "random"):
        return str(arch)
    return "subnet" if "|" in str(arch) else Path(arch).stem


def load_source(
    checkpoint: str | Path, arch: str | Path | Arch | None, *, data: str | None = None
) -> tuple[nn.Module, Source]:
    """The static subnet of `arch` in `checkpoint` (eval mode) and the `Source` describing it."""
    path = Path(checkpoint)
    ckpt, space = open_checkpoint(path)
    chosen = resolve_arch(space, arch, ckpt, path)
    model = build_model(ckpt, path)
    if ckpt["kind"] == "supernet":
        dataset = checkpoint_data(ckpt, path, space, data)
        batches = bn_batches(ckpt)
        subnet = recalibrated_subnet(model, dataset, chosen, bn_batches=batches)
        bn = f"recalibrated on {batches} training batches of '{dataset.name}'"
    else:
        subnet, bn = model, "the subnet checkpoint's own statistics"
    norm = ckpt.get("normalization", {})
    source = Source(
        checkpoint=path,
        sha256=file_digest(path),
        kind=ckpt["kind"],
        epoch=int(ckpt["epoch"]),
        task=ckpt["task"],
        num_classes=int(ckpt.get("num_classes", 1)),
        space=space,
        arch=chosen,
        label=arch_label(arch),
        bn=bn,
        mean=tuple(norm.get("mean", IMAGENET_MEAN)),
        std=tuple(norm.get("std", IMAGENET_STD)),
        data={"name": ckpt.get("data"), "size": ckpt.get("data_size")},
    )
    return subnet.eval(), source
