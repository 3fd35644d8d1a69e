"""`create`: the one place a model is built, a supernet or one static subnet of it.

`Supernet(space, task=...)` is the weight-sharing model (`hwnas.nn.supernet`); a static subnet is
built block by block from the arch's signatures (`build_subnet`), with exactly the modules
`Supernet.extract(arch)` returns. Training, checkpoints, conversion of the authors' weights,
latency measurement and export all build through `create`, so one seed gives one model everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.nn.supernet import Supernet, build_subnet
from hwnas.space import Arch, SearchSpace


def create(
    space: SearchSpace,
    *,
    task: str = "saliency",
    num_classes: int | None = None,
    arch: Arch | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A fresh `Supernet` of `space` (no `arch`) or the static subnet of `arch`, for `task`'s head
    with `num_classes` outputs where it has classes (default: the task's, `hwnas.space.tasks`).
    With `seed`, the weights are the same for the same seed and the global RNG is left as it was."""
    if seed is None:
        return _build(space, task, num_classes, arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(space, task, num_classes, arch)


def _build(space: SearchSpace, task: str, num_classes: int | None, arch: Arch | None) -> nn.Module:
    if arch is None:
        return Supernet(space, task=task, num_classes=num_classes)
    return build_subnet(space, arch, task=task, num_classes=num_classes)
