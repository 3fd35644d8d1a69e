"""`train(...)`: what `hwnas train supernet|selfkd` does, callable from Python: check the settings
and the output before any work, load the data, build the model, run the one training loop (`fit`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hwnas.errors import HwnasError
from hwnas.files import writable_file
from hwnas.space import SearchSpace
from hwnas.space.tasks import check_task


@dataclass(frozen=True)
class TrainRun:
    """A finished call: the loop's result and how many processes trained (rank 0 reports)."""

    result: object  # hwnas.train.trainer.TrainResult
    rank: int
    world: int


def default_checkpoint(space: SearchSpace, task: str, name: str) -> Path:
    """runs/SPACE-TASK/NAME.pt, the folder a search and an export look in."""
    return Path("runs") / f"{space.name}-{task.replace('/', '-')}" / f"{name}.pt"


def train(
    model_factory: Callable[[int], object],
    *,
    space: SearchSpace,
    task: str,
    data: str,
    size: tuple[int, int],
    config,
    out: str | Path,
    fresh: bool = False,
    device: str = "cpu",
    train_size: int = 512,
    val_size: int = 128,
    on_event: Callable | None = None,
) -> TrainRun:
    """Train `model_factory(num_classes)` on `data` at `size` (width, height) into the checkpoint
    `out`, resuming it unless `fresh`; `on_event` sees the trainer's step, epoch and resume events
    (rank 0 only under DDP)."""
    from hwnas.data import load_data
    from hwnas.train.task import make_task
    from hwnas.train.trainer import check_precision, fit, init_distributed

    check_task(task)
    if device != "cpu" and not device.startswith("cuda"):
        raise HwnasError(f"--torch-device must be cpu or cuda[:N], got '{device}'")
    config.validate()
    check_precision(config.precision, device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HwnasError(f"--torch-device {device}: this host has no CUDA GPU (torch {torch.__version__}); use cpu")
    writable_file(out, what="checkpoint")
    rank, world, device = init_distributed(device)
    w, h = size
    dataset = load_data(data, task=task, size=(h, w), seed=config.seed, train_size=train_size, val_size=val_size)
    model = model_factory(dataset.num_classes)
    result = fit(
        model,
        space=space,
        data=dataset,
        task=make_task(task, dataset.num_classes),
        config=config,
        out=out,
        resume=not fresh,
        device=device,
        on_event=on_event if rank == 0 else None,
    )
    return TrainRun(result=result, rank=rank, world=world)
