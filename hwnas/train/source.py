"""Where export and evaluation start: a checkpoint and an arch, turned into the static subnet they use.

A supernet's subnet is extracted with plain layers (`Supernet.extract`) and its BN statistics are
re-estimated exactly as `hwnas search` scored it (the checkpoint's `bn_batches` training batches of
its own data, `recalibrated_subnet`), so the artifact computes what the search
measured. A subnet checkpoint (`hwnas train selfkd`) is exported with its own statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.data import SOURCES, DataSet, load_data
from hwnas.data.split import IMAGENET_MEAN, IMAGENET_STD
from hwnas.errors import ArchError, CheckpointError, HwnasError
from hwnas.files import read_json
from hwnas.nn.checkpoint import Checkpoint, file_digest, load
from hwnas.space import Arch, SearchSpace
from hwnas.space.arch import search_context
from hwnas.torch_device import torch_device
from hwnas.train.bn import recalibrated_subnet

EXTREMES = ("min", "max")


def checkpoint_data(ckpt: Checkpoint, override: str | None = None) -> DataSet:
    """The `DataSet` a checkpoint was trained on, rebuilt at the space's largest resolution with the
    training seed and sizes (for BN recalibration and scoring), or the folder `override`.

    A built-in source (synthetic, digits) is rebuilt from its name; a folder must be given again.
    """
    data, path = ckpt.data, ckpt.path
    source = override or data.get("data")
    if override is None and data.get("converted_from"):
        raise CheckpointError(
            f"{path} was converted from the authors' checkpoint (`hwnas convert`) and names no data; pass a "
            "folder of the task's data with --data to re-estimate a subnet's BN statistics"
        )
    if override is None and source not in SOURCES:
        raise CheckpointError(
            f"{path} was trained on the folder '{source}'; pass its path with --data to rebuild its batches"
        )
    train_size, val_size = data.get("data_size", (512, 128))
    w, h = ckpt.space.max().resolution
    seed = int(data.get("config", {}).get("seed", 0))
    return load_data(
        source, task=data["task"], size=(h, w), seed=seed, train_size=int(train_size), val_size=int(val_size)
    )


def bn_batches(ckpt: Checkpoint) -> int:
    """How many training batches re-estimate a subnet's BN statistics (the run's `bn_batches`)."""
    return int(ckpt.data.get("config", {}).get("bn_batches", 8))


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
    search: dict[str, Any] | None = None  # best.json's record of the search that chose the arch


def resolve_arch(ckpt: Checkpoint, arch: str | Path | Arch | None) -> Arch:
    """`min` / `max` / `random`, an arch line, an Arch JSON file, an `Arch`, or None (a subnet
    checkpoint's own arch)."""
    space, own = ckpt.space, ckpt.arch
    if arch is None:
        if own is None:
            raise HwnasError(f"{ckpt.path} holds a supernet: pass --arch (min, max or an arch .json such as best.json)")
        return own
    if isinstance(arch, Arch):
        chosen = space.validate(arch)
    elif str(arch) in (*EXTREMES, "random") or "|" in str(arch):
        chosen = space.pick(str(arch))  # random: seed 0, as `hwnas arch random` and `hwnas report`
    else:
        if not Path(arch).is_file():
            raise ArchError(
                f"arch file {arch} does not exist; --arch takes min, max, random, an arch line or an arch .json "
                "(hwnas search writes best.json in its --out folder)"
            )
        try:
            chosen = space.load_arch(arch)
        except ArchError as exc:
            raise ArchError(f"arch {arch} does not fit the checkpoint's space '{space.name}': {exc}") from None
    if own is not None and chosen != own:
        raise HwnasError(f"{ckpt.path} holds the single subnet '{own}'; it cannot export '{chosen}'")
    return chosen


def arch_label(arch: str | Path | Arch | None) -> str:
    """A short name for file names: min, max, the arch file's stem, or 'subnet'."""
    if arch is None or isinstance(arch, Arch):
        return "subnet"
    if str(arch) in (*EXTREMES, "random"):
        return str(arch)
    return "subnet" if "|" in str(arch) else Path(arch).stem


def load_source(
    checkpoint: str | Path, arch: str | Path | Arch | None, *, data: str | None = None, device: str = "cpu"
) -> tuple[nn.Module, Source]:
    """The static subnet of `arch` in `checkpoint` (eval mode, on the CPU, where exporters and runtimes
    take it) and the `Source` describing it; a supernet's subnet is extracted and recalibrated on
    `device` (a `--torch-device`)."""
    ckpt = load(checkpoint)
    chosen = resolve_arch(ckpt, arch)
    model = ckpt.model().to(torch_device(device))
    if ckpt.kind == "supernet":
        dataset = checkpoint_data(ckpt, data)
        batches = bn_batches(ckpt)
        subnet = recalibrated_subnet(model, dataset, chosen, bn_batches=batches)
        bn = f"recalibrated on {batches} training batches of '{dataset.name}'"
    else:
        subnet, bn = model, "the subnet checkpoint's own statistics"
    norm = ckpt.data.get("normalization", {})
    source = Source(
        checkpoint=ckpt.path,
        sha256=file_digest(ckpt.path),
        kind=ckpt.kind,
        epoch=int(ckpt.data["epoch"]),
        task=ckpt.task,
        num_classes=ckpt.num_classes,
        space=ckpt.space,
        arch=chosen,
        label=arch_label(arch),
        bn=bn,
        mean=tuple(norm.get("mean", IMAGENET_MEAN)),
        std=tuple(norm.get("std", IMAGENET_STD)),
        data={"name": ckpt.data.get("data"), "size": ckpt.data.get("data_size")},
        search=arch_search_context(arch),
    )
    return subnet.cpu().eval(), source


def arch_search_context(arch: str | Path | Arch | None) -> dict[str, Any] | None:
    """The record of the search an arch .json (best.json) was chosen by, if it is such a file."""
    if isinstance(arch, str | Path) and str(arch).endswith(".json") and Path(arch).is_file():
        return search_context(read_json(arch, what="arch file", error=ArchError))
    return None
