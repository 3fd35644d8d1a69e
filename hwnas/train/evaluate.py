"""Score one subnet on a split: inherit weights, recalibrate BN on training batches, predict, score.

Scores come at the split's resolution (what training and search compare, fast) or, with
`original=True`, as the benchmarks compute them: each prediction resized (bilinear) to its image's
original size and scored on the original fixations, map or mask (`hwnas.data.truth`). The head's
eval blur (SalNAS) is part of the model's output, so it is applied where the model applies it, at
the output resolution, before the resize.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from hwnas.data import DataError, DataSet
from hwnas.space import Arch
from hwnas.train.bn import recalibrate_bn
from hwnas.train.task import SaliencyTask, Task


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


def predict(
    net: nn.Module,
    data: DataSet,
    task: Task,
    which: str = "val",
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, float | None]:
    """The task's predictions for the `which` split at the net's resolution, and the mean loss
    (None for a split without ground truth, such as SALICON's test images)."""
    split = data.split(which, net.arch.resolution)
    outputs, total, labelled = [], 0.0, bool(split.fields)
    with torch.no_grad():
        for batch in data.batches(split, batch_size):
            out = net(batch["image"])
            if labelled:
                total += float(task.loss(out, task.gt(batch), batch)) * len(batch["image"])
            outputs.append(task.prediction(out))
            if progress is not None:
                progress(len(batch["image"]))
    return torch.cat(outputs), (total / len(split) if labelled else None)


def evaluate(
    model: nn.Module,
    data: DataSet,
    task: Task,
    *,
    arch: Arch | None = None,
    bn_batches: int = 8,
    batch_size: int = 64,
    which: str = "val",
    original: bool = False,
    shuffle: str = "all",
) -> dict[str, float]:
    """Loss and task metrics of `arch` (a supernet's subnet) or of a static subnet on a split.

    A supernet's subnet is extracted (the supernet is left untouched) and its BN statistics are
    re-estimated on the first `bn_batches` training batches (once-for-all, AttentiveNAS); a static
    subnet is scored with its own statistics. Saliency's IG is against the training split's centre
    bias; `shuffle` picks sAUC's negatives (`hwnas.data.metrics.saliency.score_saliency`).
    """
    net = recalibrated_subnet(model, data, arch, bn_batches=bn_batches, batch_size=batch_size)
    predictions, loss = predict(net, data, task, which, batch_size=batch_size)
    scores = score(task, data, predictions, which, resolution=net.arch.resolution, original=original, shuffle=shuffle)
    return {"loss": loss, **scores}


def score(
    task: Task,
    data: DataSet,
    predictions: torch.Tensor,
    which: str = "val",
    *,
    resolution: tuple[int, int],
    original: bool = False,
    shuffle: str = "all",
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """The task's metrics of a split's predictions made at `resolution` (width, height): against
    each image's original-size ground truth (`original`), or against the split's fields at that
    resolution."""
    if not getattr(data, which).fields:
        raise DataError(f"the {which} split of '{data.name}' has no ground truth (images only): nothing to score")
    if original:
        truths = getattr(data, which).ground_truth(original=True)
    else:
        truths = data.split(which, resolution).ground_truth(original=False)
    context = {"baseline": data.center_bias(), "shuffle": shuffle} if isinstance(task, SaliencyTask) else {}
    return task.scores(predictions, truths, progress=progress, **context)
