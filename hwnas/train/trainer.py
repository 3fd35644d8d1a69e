"""The one training loop, for supernets and for single subnets.

A supernet step follows the sandwich rule (Yu et al., BigNAS/AttentiveNAS; SalNAS Section 3.1): the
largest subnet, the smallest and `sandwich` random ones, gradients accumulated, one optimizer step;
with inplace distillation the largest subnet's detached prediction is the target of the others. A
single subnet is the same loop with one arch per step. On top, a `selfkd` method (SalNAS Algorithm
1) or a comparison method turns targets into gt_bar (Eq. 3). SGD with momentum 0.9 (or Adam, FocusNet's
recipe: `hwnas.train.recipe`) and cosine annealing with warm restarts every `t0` epochs (SalNAS
Section 4.3, Table 3) or, for segmentation, MoSegNAS's "poly" schedule; optional augmentation, one
draw per step shared by the step's subnets.

Subnets and data order are functions of (seed, step) and (seed, epoch), so every DDP rank samples
the same subnets and a resumed run repeats exactly what an uninterrupted one does. A checkpoint
is written (by rank 0 only) after every epoch; a non-finite loss stops training and leaves the last
good checkpoint in place.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hwnas.data import DataSet, Step
from hwnas.errors import CheckpointError, HwnasError
from hwnas.nn.checkpoint import load, save_checkpoint
from hwnas.nn.factory import create
from hwnas.process_group import rank_world
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BISENET_STRIDE
from hwnas.space.tasks import base_task
from hwnas.train.evaluation import evaluate
from hwnas.train.recipe import (
    AUGMENTATIONS,
    Augmentation,
    check_optimizer,
    check_schedule,
    parse_crop,
    poly_factor,
)
from hwnas.train.selfkd import PKD, PSKD, Baseline, SelfKD, activate, check_method, predict
from hwnas.train.task import Task


class TrainingError(HwnasError):
    """Training cannot go on (a non-finite loss, replicas that diverged)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that decides the trained weights (all of it is stored in the checkpoint)."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05  # SalNAS: 0.1 at batch 64; scaled to the default batch of 32
    optimizer: str = "sgd"  # sgd (SalNAS) or adam (FocusNet): `hwnas.train.recipe`
    momentum: float = 0.9
    weight_decay: float = 1e-5
    augment: tuple[str, ...] = ()  # flip, rotate, blur (FocusNet), drawn per image and step
    t0: int = 10
    schedule: str = "cosine"  # cosine with warm restarts every t0 epochs, or poly (segmentation's recipe)
    ohem: float = 0.0  # segmentation: hard-pixel threshold of the loss (`segmentation_loss`); 0 is off
    crop: tuple[int, int] | None = None  # segmentation: (width, height) of the training crop (`hwnas.data.split.Step`)
    grad_clip: float = 5.0
    sandwich: int = 2
    inplace_kd: bool = True  # train_salnas.py trains every subnet on gt / gt_bar: the CLI turns it off under Self-KD
    dropout: float = 0.2  # on the largest subnet of a supernet step (train_salnas.py, AlphaNet's config)
    drop_connect: float = 0.2
    method: str = "baseline"
    alpha: float = 0.5
    seed: int = 0
    precision: str = "fp32"  # autocast: fp32 (off), bf16, or fp16 with a GradScaler (SalNAS's --amp); see PRECISIONS
    channels_last: bool = False  # weights and images in NHWC, as tensor-core convolutions want them
    bn_batches: int = 8
    max_steps: int = 0
    check_replicas: bool = False
    teacher_precision: str = "auto"  # a single subnet's teacher table: auto, fp32 or bf16 (see teacher_dtype)

    def validate(self) -> TrainConfig:
        check_method(self.method)
        check_optimizer(self.optimizer)
        check_schedule(self.schedule)
        if not 0 <= self.ohem < 1:
            raise HwnasError(f"ohem must be a probability in [0, 1) (0: plain cross entropy), got {self.ohem}")
        if self.crop is not None:
            parse_crop(self.crop)
        if not set(self.augment) <= set(AUGMENTATIONS):
            raise HwnasError(f"unknown augmentation in {self.augment}; allowed: {', '.join(AUGMENTATIONS)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise HwnasError(f"weight decay must be a non-negative number, got {self.weight_decay}")
        if self.precision not in PRECISIONS:
            raise HwnasError(f"unknown --precision '{self.precision}'; allowed: {', '.join(PRECISIONS)}")
        if self.teacher_precision not in TEACHER_PRECISIONS:
            raise HwnasError(
                f"unknown teacher precision '{self.teacher_precision}'; allowed: {', '.join(TEACHER_PRECISIONS)}"
            )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "t0": self.t0, "bn_batches": self.bn_batches}
        for name, value in positive.items():
            if value < 1:
                raise HwnasError(f"{name} must be at least 1, got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HwnasError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.alpha <= 1:
            raise HwnasError(f"alpha must be in [0, 1], got {self.alpha}")
        if not (0 <= self.dropout < 1 and 0 <= self.drop_connect < 1):
            raise HwnasError(f"dropout and drop_connect must be in [0, 1), got {self.dropout} and {self.drop_connect}")
        if self.sandwich < 0 or self.max_steps < 0 or self.grad_clip < 0:
            raise HwnasError("sandwich, max_steps and grad_clip must not be negative")
        return self


TABLE_BYTES = 1 << 30  # Self-KD keeps a subnet teacher's predictions for the training split up to this size
TABLE_BATCH = 256  # images per teacher call when filling that table
TEACHER_PRECISIONS = ("auto", "fp32", "bf16")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str) -> None:
    """fp16 training needs CUDA (its loss scaling is CUDA's GradScaler); bf16 autocast also runs on a
    CPU (natively where `native_bf16`). `TrainConfig.validate` checks the name."""
    if precision == "fp16" and not device.startswith("cuda"):
        raise HwnasError(
            f"--precision fp16 needs a CUDA device (--torch-device cuda); this run is on {device}: "
            "use bf16 or fp32 on a CPU"
        )


def _as_float(output: Any) -> Any:
    """A model's output (a tensor, or a tuple/list/dict of them) in float32, for the loss."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, dict):
        return {k: _as_float(v) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(_as_float(v) for v in output)
    return output


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively (a CUDA GPU that supports bf16, or a CPU
    with AVX512-BF16 / AMX), where a bf16 teacher is faster; elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def teacher_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a single subnet's teacher table is computed in: `bf16` autocast, `fp32`, or `auto` =
    bf16 where `native_bf16`. The teacher only supplies no-grad targets, mixed with the ground truth
    (SalNAS Eq. 3); bf16 moves them by well under 1% of their range and halves the teacher's cost on
    CPUs with AMX."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return torch.float32


# Settings a resumed run may change without changing what it computes.
_RESUMABLE_CHANGES = {"epochs", "check_replicas"}


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    images_per_s: float


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    epochs: int
    record: dict[str, Any]


@dataclass(frozen=True)
class ResumeEvent:
    """A checkpoint was restored: training goes on after `epoch` of `epochs`."""

    epoch: int
    epochs: int


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: list[dict[str, Any]]
    resumed_from: int
    trained: int = 0  # epochs this call trained (0: the checkpoint was already complete)


def sandwich(space: SearchSpace, *, seed: int, step: int, k: int) -> list[Arch]:
    """The sandwich rule's subnets for a global step: largest, smallest, then k random ones."""
    rng = np.random.default_rng([seed, step])
    return [space.max(), space.min(), *(space.sample(rng) for _ in range(k))]


@dataclass(frozen=True)
class ArchPool:
    """Subnets a supernet is fine-tuned on instead of the sandwich rule: NAT/NATv2's supernet
    adaptation trains only subnets sampled from the current trade-off front. `k` of them per step,
    drawn without replacement as a function of (seed, round, step)."""

    archs: tuple[Arch, ...]
    k: int = 4  # NATv2 Section 4.1: four subnets per batch
    round: int = 0

    def draw(self, seed: int, step: int) -> list[Arch]:
        rng = np.random.default_rng([seed, self.round, step])
        picked = rng.choice(len(self.archs), size=min(self.k, len(self.archs)), replace=False)
        return [self.archs[i] for i in picked]


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int):
    """The learning-rate schedule, stepped once per optimizer step (`steps` a epoch): cosine with
    warm restarts every `t0` epochs (SalNAS Section 4.3), or "poly" over the whole run (MoSegNAS
    Section IV-C: lr x (1 - step / total)^0.9, `hwnas.train.recipe.poly_factor`)."""
    if config.schedule == "poly":
        total = config.epochs * steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_factor(step, total))
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config.t0 * steps)


def _reinitialise(model: nn.Module, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
    return model


class _Run:
    """State of one training run; `fit` drives it."""

    def __init__(self, model, *, space, data, task, config, out, device, pool=None):
        self.model, self.space, self.data, self.task, self.config = model, space, data, task, config
        self.pool: ArchPool | None = pool
        self.out, self.device = Path(out), torch.device(device)
        self.rank, self.world = rank_world()
        self.supernet = hasattr(model, "set_active")
        self.model.to(self.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.wrapped = model
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
        self.optimizer, self.scheduler = self.make_optimizer(model)
        if (config.augment or self.cropped()) and not self.supernet and config.method in ("selfkd", "pskd"):
            what = "--augment" if config.augment else f"--crop {config.crop[0]}x{config.crop[1]}"
            raise HwnasError(
                f"{what} with --method {config.method} on one subnet: its teacher predicts the training split "
                "once, whole and un-augmented; pass --augment none and a --crop of the training size (or train a "
                "supernet)"
            )
        self.distiller = self.make_distiller()
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    # ---- construction -----------------------------------------------------------------
    def cropped(self) -> bool:
        """Whether training cuts a window smaller than the stored rows (segmentation's `crop`)."""
        if self.config.crop is None:
            return False
        h, w = self.data.train.size
        return self.config.crop[1] < h or self.config.crop[0] < w

    def steps_per_epoch(self) -> int:
        per_step = self.config.batch_size * self.world
        steps = len(self.data.train) // per_step
        if steps == 0:
            raise HwnasError(
                f"the training split has {len(self.data.train)} images, fewer than one step needs "
                f"({self.config.batch_size} per process x {self.world}); lower --batch-size"
            )
        return min(steps, self.config.max_steps) if self.config.max_steps else steps

    def make_optimizer(self, model: nn.Module):
        c = self.config
        if c.optimizer == "adam":  # FocusNet Section 4.1 (TRACER's `Optimizer`: torch.optim.Adam)
            optimizer = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        steps = len(self.data.train) // (c.batch_size * self.world) or 1
        steps = min(steps, c.max_steps) if c.max_steps else steps
        return optimizer, make_scheduler(optimizer, c, steps)

    def make_distiller(self) -> Baseline:
        c = self.config
        if c.method == "selfkd":
            return SelfKD(self.task, self.model, alpha=c.alpha, predict_all=self.teacher_table())
        if c.method == "pskd":
            return PSKD(self.task, self.model, epochs=c.epochs, predict_all=self.teacher_table())
        if c.method == "pkd":
            teacher = _reinitialise(copy.deepcopy(self.model), c.seed + 1)
            return PKD(self.task, teacher, make_optimizer=self.make_optimizer, grad_clip=c.grad_clip)
        return Baseline(self.task)

    def teacher_table(self) -> Callable[[nn.Module], torch.Tensor] | None:
        """For a single subnet, a function giving an inference copy of a teacher's (`fold_bn`)
        predictions over the training split, in `teacher_dtype`, if they fit in TABLE_BYTES (else the
        teacher predicts batch by batch)."""
        if self.supernet:
            return None
        w, h = self.model.arch.resolution
        classes = self.data.num_classes  # the values a teacher predicts per image: classes, maps or class maps
        per_image = {"classification": classes, "segmentation": classes * h * w}.get(base_task(self.task.name), h * w)
        if len(self.data.train) * per_image * 4 > TABLE_BYTES:
            return None
        split = self.data.split("train", (w, h))
        dtype = teacher_dtype(self.config.teacher_precision, self.device)

        def predict_all(teacher: nn.Module) -> torch.Tensor:
            images = (
                b["image"].to(self.device, memory_format=torch.channels_last)
                for b in self.data.batches(split, TABLE_BATCH)
            )
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
                rows = [predict(teacher, self.task, x, None) for x in images]
            return torch.cat(rows).float()

        return predict_all

    def archs(self, step: int) -> list[Arch | None]:
        if not self.supernet:
            return [None]
        if self.pool is not None:
            return self.pool.draw(self.config.seed, step)
        return sandwich(self.space, seed=self.config.seed, step=step, k=self.config.sandwich)

    def eval_archs(self) -> dict[str, Arch | None]:
        return {"max": self.space.max(), "min": self.space.min()} if self.supernet else {"subnet": None}

    # ---- checkpoint ---------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        arch = None if self.supernet else self.space.arch_to_dict(self.model.arch)
        return {
            "kind": "supernet" if self.supernet else "subnet",
            "task": self.task.name,
            "num_classes": self.data.num_classes,
            "space_toml": self.space.toml,
            "space_digest": self.space.digest(),
            "arch": arch,
            "data": self.data.name,
            "data_size": [len(self.data.train), len(self.data.val)],
            "normalization": {"mean": list(self.data.mean), "std": list(self.data.std)},
            "config": asdict(self.config),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "distiller": self.distiller.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "history": self.history,
        }

    def restore(self, path: Path) -> None:
        data = load(path, space=self.space).data
        mine = self.payload()
        for key in ("kind", "task", "arch", "data"):
            if data.get(key) != mine[key]:
                raise CheckpointError(
                    f"checkpoint {path} holds a {data.get(key)!r} run, not {mine[key]!r} ({key}); "
                    "give another --out or --fresh to start over"
                )
        theirs = data.get("config", {})
        changed = [
            f"{f.name}={theirs.get(f.name)!r} (now {getattr(self.config, f.name)!r})"
            for f in fields(self.config)
            if f.name not in _RESUMABLE_CHANGES and theirs.get(f.name, f.default) != getattr(self.config, f.name)
        ]
        if changed:
            raise CheckpointError(
                f"checkpoint {path} was trained with other settings: {', '.join(changed)}; "
                "resume with the same settings, or pass --fresh to start over"
            )
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.distiller.load_state_dict(data["distiller"])
        if self.scaler and data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        torch.set_rng_state(data["rng"])
        if self.device.type == "cuda" and data.get("cuda_rng") is not None:  # dropout draws on the GPU
            torch.cuda.set_rng_state(data["cuda_rng"], self.device)
        self.epoch, self.history = int(data["epoch"]), list(data["history"])

    # ---- one step -------------------------------------------------------------------------
    def resolutions(self, archs: list[Arch | None]) -> list[tuple[int, int]]:
        """The distinct (width, height) a step's subnets run at, in order."""
        return list(dict.fromkeys((arch or self.model.arch).resolution for arch in archs))

    def step(
        self, rows: np.ndarray, archs: list[Arch | None], where: str, batches: dict[tuple[int, int], dict]
    ) -> float:
        """One optimiser step of `archs` on the training `rows`, given at each resolution in `batches`."""
        task, c = self.task, self.config
        self.optimizer.zero_grad(set_to_none=True)
        inplace_target, total = None, 0.0
        augmentation = Augmentation.draw(c.augment, len(rows)) if c.augment else None  # one per step: all subnets
        for i, arch in enumerate(archs):
            w, h = (arch or self.model.arch).resolution
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batches[(w, h)].items()}
            if c.channels_last:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            if augmentation is not None:
                batch = augmentation.apply(batch)
            batch["index"] = torch.as_tensor(rows, device=self.device)
            size = tuple(batch["image"].shape[-2:])  # the arch's resolution, or its scale of a crop
            gt = task.gt(batch) if inplace_target is None else task.resize(inplace_target, size)
            target = self.distiller.target(batch["image"], gt, batch, arch, self.epoch)
            activate(self.model, arch)
            with self.autocast(), self.regularization(arch):
                output = _as_float(self.wrapped(batch["image"]))
            loss = task.loss(output, target, batch)
            self.check_finite(loss, f"{where}, subnet {arch or self.model.arch}")
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            if i == 0 and c.inplace_kd and len(archs) > 1:
                inplace_target = task.prediction(output).detach()
            total += float(loss.detach())
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return total / len(archs)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as `config.precision` says (nothing for fp32)."""
        precision = self.config.precision
        if precision == "fp32":  # no autocast at all: torch knows it for cpu, cuda and mps only
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision])

    def regularization(self, arch: Arch | None) -> contextlib.AbstractContextManager:
        """Dropout and drop-connect on the largest subnet of a supernet step, as SalNAS trains
        (`Supernet.regularized`); nothing for other subnets or a single subnet."""
        c = self.config
        if self.supernet and arch == self.space.max() and (c.dropout or c.drop_connect):
            return self.model.regularized(dropout=c.dropout, drop_connect=c.drop_connect)
        return contextlib.nullcontext()

    def check_finite(self, loss: torch.Tensor, where: str) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.device)  # NCCL: on the GPU
        if self.world > 1:
            dist.all_reduce(bad)
        if bad.item():
            kept = (
                f"the last good checkpoint (epoch {self.epoch}) is kept at {self.out}"
                if self.epoch
                else "no checkpoint was written"
            )
            raise TrainingError(
                f"the loss became {float(loss.detach())} at {where}; training stopped and {kept}; "
                "lower --lr or set --grad-clip"
            )

    def check_replicas(self) -> None:
        digest = hashlib.sha256()
        for p in self.model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        digests = [None] * self.world
        dist.all_gather_object(digests, digest.hexdigest())
        if len(set(digests)) != 1:
            raise TrainingError(f"the {self.world} processes hold different weights after a step: {digests}")

    # ---- epochs ---------------------------------------------------------------------------
    def run_epoch(self, on_event: Callable | None) -> dict[str, Any]:
        c, steps = self.config, self.steps_per_epoch()
        per_step = c.batch_size * self.world
        order = np.random.default_rng([c.seed, self.epoch]).permutation(len(self.data.train))
        self.model.train()
        start, losses, checked = time.perf_counter(), [], 0
        draws = [self.archs(self.epoch * steps + s) for s in range(steps)]
        scale = "scale" in c.augment  # MoSegNAS's scale-and-crop, per row, where the rows are read
        crop = (c.crop[1], c.crop[0]) if self.cropped() else None
        multiple = BISENET_STRIDE if getattr(self.space, "residual", False) else 1  # its heads meet 1/8 to 1/32
        plan = [
            Step(
                order[s * per_step : (s + 1) * per_step][self.rank :: self.world], self.resolutions(archs),
                int(np.random.SeedSequence([c.seed, self.epoch, s]).generate_state(1)[0])
                if scale or crop
                else None,
                crop, scale, multiple,
            )
            for s, archs in enumerate(draws)
        ]  # fmt: skip
        batches = self.data.training_batches(plan, pin=self.device.type == "cuda")  # on disk: read by workers
        for s, (step, archs) in enumerate(zip(plan, draws, strict=True)):
            t0 = time.perf_counter()
            losses.append(self.step(step.rows, archs, f"epoch {self.epoch + 1} step {s + 1}", next(batches)))
            if c.check_replicas and self.world > 1:
                self.check_replicas()
                checked += 1
            if on_event:
                speed = per_step * len(archs) / (time.perf_counter() - t0)
                on_event(StepEvent(self.epoch, c.epochs, s + 1, steps, losses[-1], speed))
        seconds = time.perf_counter() - start
        val = {
            name: evaluate(self.model, self.data, self.task, arch=arch, bn_batches=c.bn_batches)
            for name, arch in self.eval_archs().items()
        }
        val_loss = float(np.mean([v["loss"] for v in val.values()]))
        best_before = getattr(self.distiller, "best", None)
        self.distiller.end_epoch(self.model, val_loss, self.epoch)
        return {
            "epoch": self.epoch + 1,
            "train_loss": float(np.mean(losses)),
            "val": val,
            "val_loss": val_loss,
            "seconds": seconds,
            "images_per_s": steps * per_step / seconds,
            "teacher_updated": best_before is not None and val_loss < best_before,
            "replica_checks": checked,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
        }


def fit(
    model: nn.Module,
    *,
    space: SearchSpace,
    data: DataSet,
    task: Task,
    config: TrainConfig,
    out: str | Path,
    resume: bool = True,
    device: str = "cpu",
    on_event: Callable[[StepEvent | EpochEvent | ResumeEvent], None] | None = None,
    until: int | None = None,
    pool: ArchPool | None = None,
) -> TrainResult:
    """Train `model` (a `Supernet`, or a static `SubNet`) and checkpoint it to `out` after every epoch.

    With `resume`, an existing checkpoint at `out` is continued exactly (it must come from the same
    space, task, data and settings; only `epochs` may grow). `until` stops after that many epochs
    while schedules still count `config.epochs` (a later call resumes). `pool` replaces the sandwich
    rule by subnets drawn from a fixed set (supernet adaptation, NATv2).
    """
    if pool is not None and (not hasattr(model, "set_active") or not pool.archs):
        raise HwnasError("an arch pool needs a supernet and at least one arch")
    config.validate()
    check_precision(config.precision, device)
    run = _Run(model, space=space, data=data, task=task, config=config, out=out, device=device, pool=pool)
    out = Path(out)
    resumed_from = 0
    if resume and out.exists():
        run.restore(out)
        resumed_from = run.epoch
        if on_event:
            on_event(ResumeEvent(run.epoch, config.epochs))
    else:
        torch.manual_seed(
            config.seed
        )  # anything drawing from torch's generator repeats, and resumes from the checkpoint
    while run.epoch < min(config.epochs, until or config.epochs):
        record = run.run_epoch(on_event)
        run.epoch += 1
        run.history.append(record)
        if run.rank == 0:
            save_checkpoint(out, run.payload())
        if run.world > 1:
            dist.barrier()
        if on_event:
            on_event(EpochEvent(run.epoch, config.epochs, record))
    trained = len(run.history) - resumed_from
    return TrainResult(checkpoint=out, history=run.history, resumed_from=resumed_from, trained=trained)


def initial_subnet(space: SearchSpace, arch: Arch, *, task: str, num_classes: int, seed: int, init: str | Path | None):
    """The subnet a single-subnet run starts from: inherited from a supernet checkpoint, or fresh."""
    if init is None:
        return create(space, task=task, num_classes=num_classes, seed=seed, arch=arch)
    ckpt = load(init, space=space)
    if ckpt.kind != "supernet" or ckpt.task != task:
        raise CheckpointError(f"--init {init} holds a {ckpt.task} {ckpt.kind}; a {task} supernet checkpoint is needed")
    return ckpt.model().extract(arch).train()
