"""Score one subnet on a validation split: inherit weights, recalibrate BN on training batches, evaluate."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from hwnas.data import DataSet
from hwnas.space import Arch
from hwnas.train.bn import recalibrate_bn
from hwnas.train.task import Task


def recalibrated_subnet(
    model: nn.Module, data: DataSet, arch: Arch | None, *, bn_batches: int = 8, batch_size: int = 64
) -> nn.Module:
    """The static subnet of `arch` (a supernet's, with BN statistics re-estimated on the first
    `bn_batches` training batches at its resolution), or `model` itself if it is already static."""
    if not hasattr(model, "extract"):
        return model.eval()
    net = model.extract(arch)
    train = data.split("train", net.arch.resolution)
    recalibrate_bn(net, (b["image"] for b in itertools.islice(data.batches(train, batch_size), bn_batches)))
    return net.eval()


def evaluate(
    model: nn.Module,
    data: DataSet,
    task: Task,
    *,
    arch: Arch | None = None,
    bn_batches: int = 8,
    batch_size: int = 64,
) -> dict[str, float]:
    """Validation loss and task metrics of `arch` (a supernet's subnet) or of a static subnet.

    A supernet's subnet is extracted (the supernet is left untouched) and its BN statistics are
    re-estimated on the first `bn_batches` training batches (once-for-all, AttentiveNAS); a static
    subnet is scored with its own statistics.
    """
    net = recalibrated_subnet(model, data, arch, bn_batches=bn_batches, batch_size=batch_size)
    resolution = net.arch.resolution
    val = data.split("val", resolution)
    outputs, batches, total = [], [], 0.0
    with torch.no_grad():
        for batch in data.batches(val, batch_size):
            out = net(batch["image"])
            total += float(task.loss(out, task.gt(batch), batch)) * len(batch["image"])
            outputs.append(out)
            batches.append(batch)
    return {"loss": total / len(val), **task.scores(outputs, batches)}
