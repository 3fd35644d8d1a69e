"""The training verbs as one call each, what `hwnas train supernet|selfkd` do, callable from Python.

`train_supernet` trains a weight-sharing supernet (the sandwich rule, inplace KD, optional Self-KD,
SalNAS Algorithm 1); `train_subnet` trains one subnet with Self-KD or a comparison method (SalNAS
Table 6). Each checks every setting and the output before any work, loads the data, builds the
model (`hwnas.nn.create`), runs the one training loop (`fit`) and returns a `TrainRun`; a run whose
checkpoint exists resumes unless `fresh`. Settings are `TrainConfig`'s fields, with the task's
recipe (`hwnas.train.recipe`) for those not given. NATv2's post-processing is
`hwnas.train.postprocess.post_process`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import HwnasError
from hwnas.files import writable_file
from hwnas.nn.factory import create
from hwnas.process_group import init_distributed
from hwnas.space import DEFAULT_SPACE, Arch, SearchSpace
from hwnas.space.tasks import check_task
from hwnas.torch_device import torch_device
from hwnas.train.recipe import recipe_settings
from hwnas.train.trainer import TrainConfig, TrainResult, check_precision, fit, initial_subnet

# from the task's recipe unless given
RECIPE = ("optimizer", "lr", "weight_decay", "batch_size", "augment", "schedule", "ohem", "crop")
RUN = ("method", "inplace_kd")  # set by the verb itself


@dataclass(frozen=True)
class TrainRun:
    """A finished call: the loop's result and how many processes trained (rank 0 reports)."""

    result: TrainResult
    rank: int
    world: int


def default_checkpoint(space: SearchSpace, task: str, name: str) -> Path:
    """runs/SPACE-TASK/NAME.pt, the folder a search and an export look in."""
    return Path("runs") / f"{space.name}-{task.replace('/', '-')}" / f"{name}.pt"


def train_supernet(
    space: str | Path | SearchSpace | None = None,
    *,
    task: str = "saliency",
    data: str = "synthetic",
    out: str | Path | None = None,
    fresh: bool = False,
    selfkd: bool = False,
    init: str | Path | None = None,
    torch_device: str = "cpu",
    train_size: int = 512,
    val_size: int = 128,
    on_event: Callable | None = None,
    on_inherited: Callable | None = None,
    **settings: Any,
) -> TrainRun:
    """Train a supernet of `space` (default alphanet) for `task`'s head on `data` (synthetic, digits
    or a dataset folder) into the checkpoint `out` (default `runs/SPACE-TASK/supernet.pt`).

    `selfkd` trains with SalNAS's Self-KD teacher (and, unless `inplace_kd=True` is given, every
    subnet on gt_bar, as train_salnas.py does); `init` starts from another checkpoint's weights (an
    hwnas supernet of any task, or the authors' AlphaNet/AttentiveNAS or SalNAS file), and
    `on_inherited` is told what came across. `settings`: `TrainConfig` fields (epochs, seed, lr, ...).
    """
    from hwnas.train.inherit import inherit

    sp = _space(space)
    check_task(task)
    path = Path(out) if out is not None else default_checkpoint(sp, task, "supernet")
    if init is not None and path.exists() and not fresh:
        raise HwnasError(
            f"--init starts a new run but {path} already holds one: add --fresh to start over from --init, "
            "or drop --init to resume it"
        )
    inplace_kd = settings.pop("inplace_kd", None)
    inplace_kd = not selfkd if inplace_kd is None else inplace_kd
    config = _config(task, settings, method="selfkd" if selfkd else "baseline", inplace_kd=inplace_kd)

    def factory(num_classes: int) -> torch.nn.Module:
        model = create(sp, task=task, num_classes=num_classes, seed=config.seed)
        if init is not None:
            inherited = inherit(model, init, space=sp, task=task)
            if on_inherited is not None:
                on_inherited(inherited)
        return model

    return _train(
        factory, space=sp, task=task, data=data, size=sp.max().resolution, config=config, out=path, fresh=fresh,
        device=torch_device, train_size=train_size, val_size=val_size, on_event=on_event,
    )  # fmt: skip


def train_subnet(
    arch: str | Arch = "min",
    space: str | Path | SearchSpace | None = None,
    *,
    task: str = "saliency",
    method: str = "selfkd",
    data: str = "synthetic",
    out: str | Path | None = None,
    fresh: bool = False,
    init: str | Path | None = None,
    torch_device: str = "cpu",
    train_size: int = 512,
    val_size: int = 128,
    on_event: Callable | None = None,
    **settings: Any,
) -> TrainRun:
    """Train one subnet, `arch` (min, max, random, an arch .json file, an arch line or an `Arch`),
    with `method` (selfkd, baseline, pkd or pskd) into `out` (default
    `runs/SPACE-TASK/subnet-METHOD.pt`); with `init`, its weights start as a supernet checkpoint's,
    whose space is the default for `space`. `settings`: `TrainConfig` fields (epochs default 5).
    """
    from hwnas.nn.checkpoint import resolve_space

    sp = space if isinstance(space, SearchSpace) else resolve_space(space, init)
    check_task(task)
    settings.setdefault("epochs", 5)
    config = _config(task, settings, method=method)
    chosen = sp.validate(arch) if isinstance(arch, Arch) else sp.pick(arch, config.seed)
    path = Path(out) if out is not None else default_checkpoint(sp, task, f"subnet-{method}")

    def factory(num_classes: int) -> torch.nn.Module:
        return initial_subnet(sp, chosen, task=task, num_classes=num_classes, seed=config.seed, init=init)

    return _train(
        factory, space=sp, task=task, data=data, size=chosen.resolution, config=config, out=path, fresh=fresh,
        device=torch_device, train_size=train_size, val_size=val_size, on_event=on_event,
    )  # fmt: skip


def _space(space: str | Path | SearchSpace | None) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else SearchSpace.load(space or DEFAULT_SPACE)


def _config(task: str, settings: dict[str, Any], **run: Any) -> TrainConfig:
    """`TrainConfig` from the task's recipe, the `settings` given (one `HwnasError` for a name it
    does not have) and what the verb sets itself (`run`)."""
    allowed = [f.name for f in fields(TrainConfig) if f.name not in RUN]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise HwnasError(f"unknown training setting(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    recipe = recipe_settings(task, **{k: settings.pop(k) for k in RECIPE if k in settings})
    return TrainConfig(**recipe, **settings, **run)


def _with_ohem(task, ohem: float):
    """A segmentation task whose loss mines hard pixels at `ohem`."""
    if not ohem:
        return task
    if not hasattr(task, "ohem"):
        raise HwnasError(f"ohem mines the hard pixels of a segmentation loss; the task is {task.name}")
    return replace(task, ohem=ohem)


def _train(
    model_factory: Callable[[int], torch.nn.Module],
    *,
    space: SearchSpace,
    task: str,
    data: str,
    size: tuple[int, int],
    config: TrainConfig,
    out: Path,
    fresh: bool,
    device: str,
    train_size: int,
    val_size: int,
    on_event: Callable | None,
) -> TrainRun:
    """Train `model_factory(num_classes)` on `data` at `size` (width, height) into the checkpoint
    `out`, resuming it unless `fresh`; `on_event` sees the trainer's step, epoch and resume events
    (rank 0 only under DDP)."""
    from hwnas.data import load_data
    from hwnas.train.task import make_task

    torch_device(device)
    config.validate()
    check_precision(config.precision, device)
    writable_file(out, what="checkpoint")
    rank, world, device = init_distributed(device)
    w, h = size
    dataset = load_data(data, task=task, size=(h, w), seed=config.seed, train_size=train_size, val_size=val_size)
    model = model_factory(dataset.num_classes)
    result = fit(
        model,
        space=space,
        data=dataset,
        task=_with_ohem(make_task(task, dataset.num_classes), config.ohem),
        config=config,
        out=out,
        resume=not fresh,
        device=device,
        on_event=on_event if rank == 0 else None,
    )
    return TrainRun(result=result, rank=rank, world=world)
