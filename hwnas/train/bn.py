"""Batch-norm recalibration before evaluating a subnet (once-for-all `set_running_statistics`).

Weight-sharing leaves BN running statistics that belong to no particular subnet. Before a subnet
is scored, its statistics are reset and re-estimated on a few training batches as a cumulative
(equal-weight) average, with weights untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from hwnas.data import DataSet
from hwnas.errors import HwnasError
from hwnas.space import Arch
from hwnas.torch_device import device_of


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor | tuple]) -> int:
    """Reset every BN layer's statistics and re-estimate them on `batches`; returns the count used.

    `batches` yields input tensors or tuples whose first item is the input. On a `Supernet`, the
    active subnet's channels are re-estimated and all others are reset.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    used = 0
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, tuple | list) else batch)
                used += 1
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.train(was_training)
    if used == 0:
        raise HwnasError("BN recalibration needs at least one batch of training data; got none")
    return used


def recalibrated_subnet(
    model: nn.Module, data: DataSet, arch: Arch | None, *, bn_batches: int = 8, batch_size: int = 64
) -> nn.Module:
    """The static subnet of `arch` (a supernet's, with BN statistics re-estimated on the first
    `bn_batches` training batches at its resolution), or `model` itself if it is already static."""
    if not hasattr(model, "extract"):
        return model.eval()
    net = model.extract(arch)  # on the supernet's device
    train, device = data.split("train", net.arch.resolution), device_of(model)
    if len(train) > bn_batches * batch_size:  # only the rows used: a loader reading ahead reads no more
        train = train.subset(np.arange(bn_batches * batch_size))
    batches = itertools.islice(data.batches(train, batch_size, pin=device.type == "cuda"), bn_batches)
    recalibrate_bn(net, (b["image"].to(device, non_blocking=True) for b in batches))
    return net.eval()
