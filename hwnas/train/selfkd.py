"""Teacher-based targets for training: Self-KD (SalNAS Algorithm 1, Eq. 3) and the comparison methods
of SalNAS Table 6 (baseline, PKD, PS-KD).

Every method turns the ground truth into a training target gt_bar = p + (gt - p) x alpha, where p
is its teacher's prediction (SalNAS Eq. 3) and alpha the weight left on the ground truth:

- baseline: no teacher, gt_bar = gt.
- selfkd: the teacher S_avg averages the student's weights (buffers included) over the epochs whose
  validation loss was the best so far (Algorithm 1, lines 18-21, in the manner of SWA); alpha = 1 in
  the first epoch and `alpha` (0.5) after; no gradient flows through the teacher.
- pkd: a second network of the same architecture, trained jointly on the ground truth; the student
  fits the mix with its detached prediction.
- pskd (Kim et al., progressive self-KD): the teacher is last epoch's student and the weight on it
  grows as 0.8 x t / T, so alpha_t = 1 - 0.8 x t / T.

A single subnet's teacher predicts in eval mode, with its (averaged) BN buffers. A supernet
teacher's running statistics belong to no subnet, so it predicts with batch statistics (train mode
with BN momentum 0, which leaves its buffers as they are).

A single subnet's Self-KD and PS-KD teachers are fixed for a whole epoch, so their predictions for
the training split are computed once per teacher change (`TeacherTable`) with an inference copy of
the teacher (BN folded into the convs, channels_last; equal to the teacher's eval-mode output to
float rounding), instead of once per step: that is what keeps Self-KD near the baseline's cost.
The trainer's `predict_all` decides the precision (bf16 where the device has it natively, see
`hwnas.train.trainer.teacher_dtype`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.optim.swa_utils import AveragedModel

from hwnas.errors import HwnasError
from hwnas.nn.blocks import ConvBnAct, folded
from hwnas.space import Arch
from hwnas.train.task import Task

METHODS = ("baseline", "selfkd", "pkd", "pskd")


def activate(model: nn.Module, arch: Arch | None) -> None:
    """Switch a supernet to `arch`; a static subnet has nothing to switch."""
    if arch is not None and hasattr(model, "set_active"):
        model.set_active(arch)


def _freeze_bn_stats(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    return model


def predict(teacher: nn.Module, task: Task, image: torch.Tensor, arch: Arch | None) -> torch.Tensor:
    """A teacher's prediction, without gradient (eval mode for a subnet, batch statistics for a supernet)."""
    activate(teacher, arch)
    teacher.train(hasattr(teacher, "set_active"))
    with torch.no_grad():
        return task.prediction(teacher(image))


def fold_bn(model: nn.Module, into: nn.Module | None = None) -> nn.Module:
    """An eval-mode inference copy of a static subnet: every `ConvBnAct`'s BatchNorm folded into its
    conv, weights in channels_last. Given `into` (an earlier copy of a model of the same structure),
    its weights are refreshed in place, so a teacher that changes every epoch is not copied anew."""
    if into is None:
        into = folded(model).to(memory_format=torch.channels_last)
    into.load_state_dict(model.state_dict(), strict=False)  # the weights that were not folded
    source = dict(model.named_modules())
    with torch.no_grad():
        for name, m in into.named_modules():
            if isinstance(m, ConvBnAct):
                conv, bn = source[name].conv, source[name].bn
                weight, bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                m.conv.weight.copy_(weight)
                m.conv.bias.copy_(bias)
    return into


class TeacherTable:
    """A fixed single-subnet teacher's predictions for the whole training split, made on first use
    after each change of the teacher. `predict_all(inference_copy)` returns them in row order, in fixed
    batches, so that a resumed run gets the same numbers as an uninterrupted one. The inference copy
    is built with the table (once per run) and refreshed from the teacher before each use."""

    def __init__(self, predict_all: Callable[[nn.Module], torch.Tensor] | None, teacher: nn.Module):
        self.predict_all = predict_all
        self.rows: torch.Tensor | None = None
        self._copy = None if predict_all is None else fold_bn(teacher)

    def applies(self, arch: Arch | None, batch: dict) -> bool:
        return arch is None and self.predict_all is not None and "index" in batch

    def lookup(self, teacher: nn.Module, index: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            fold_bn(teacher, into=self._copy)
            self.rows = self.predict_all(self._copy)
        return self.rows[index]

    def invalidate(self) -> None:
        self.rows = None


def mix(teacher_pred: torch.Tensor, gt: torch.Tensor, alpha: float) -> torch.Tensor:
    """SalNAS Eq. 3: gt_bar = p + (gt - p) x alpha."""
    return teacher_pred + (gt - teacher_pred) * alpha


class Baseline:
    """No distillation: the target is the ground truth."""

    method = "baseline"

    def __init__(self, task: Task):
        self.task = task

    def target(self, image: torch.Tensor, gt: torch.Tensor, batch: dict, arch: Arch | None, epoch: int) -> torch.Tensor:
        return gt

    def end_epoch(self, student: nn.Module, val_loss: float, epoch: int) -> None:
        """Called after validation of `epoch` (0-based)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class SelfKD(Baseline):
    """SalNAS Algorithm 1: S_avg, updated only when the validation loss improves."""

    method = "selfkd"

    def __init__(
        self,
        task: Task,
        student: nn.Module,
        *,
        alpha: float = 0.5,
        predict_all: Callable[[nn.Module], torch.Tensor] | None = None,
    ):
        """`predict_all`, given for a single subnet, fills a `TeacherTable`: an eval-mode teacher's
        prediction for an image does not change until S_avg does, so it is computed once per update
        of S_avg instead of once per step (Algorithm 1, line 7)."""
        super().__init__(task)
        self.alpha = alpha
        self.teacher = AveragedModel(student, use_buffers=True)
        _freeze_bn_stats(self.teacher.module)
        self.best = math.inf
        self.table = TeacherTable(predict_all, self.teacher.module)

    def target(self, image, gt, batch, arch, epoch):  # noqa: D102
        if epoch == 0 or int(self.teacher.n_averaged) == 0:  # Algorithm 1, lines 6 and 11: alpha = 1
            return gt
        if self.table.applies(arch, batch):
            return mix(self.table.lookup(self.teacher.module, batch["index"]), gt, self.alpha)
        return mix(predict(self.teacher.module, self.task, image, arch), gt, self.alpha)

    def end_epoch(self, student, val_loss, epoch):  # noqa: D102
        if val_loss < self.best:
            self.best = val_loss
            self.teacher.update_parameters(student)
            self.table.invalidate()

    def state_dict(self):  # noqa: D102
        return {"teacher": self.teacher.state_dict(), "best": self.best}

    def load_state_dict(self, state):  # noqa: D102
        self.teacher.load_state_dict(state["teacher"])
        self.best = float(state["best"])
        self.table.invalidate()


class PSKD(Baseline):
    """Progressive self-KD: teacher = the previous epoch's student, weight 0.8 x (t + 1) / T on it
    from the second epoch on (t counted from 0), as the authors' `main_pskd.py` and `train_ps_kd`
    (`salnas/core/trainer.py`) do; the first epoch trains on the ground truth."""

    method = "pskd"

    def __init__(
        self,
        task: Task,
        student: nn.Module,
        *,
        epochs: int,
        alpha_t: float = 0.8,
        predict_all: Callable[[nn.Module], torch.Tensor] | None = None,
    ):
        super().__init__(task)
        self.teacher = _freeze_bn_stats(copy.deepcopy(student))
        self.epochs, self.alpha_t = epochs, alpha_t
        self.table = TeacherTable(predict_all, self.teacher)

    def target(self, image, gt, batch, arch, epoch):  # noqa: D102
        if epoch == 0:
            return gt
        weight = self.alpha_t * (epoch + 1) / self.epochs
        if self.table.applies(arch, batch):
            return mix(self.table.lookup(self.teacher, batch["index"]), gt, 1 - weight)
        return mix(predict(self.teacher, self.task, image, arch), gt, 1 - weight)

    def end_epoch(self, student, val_loss, epoch):  # noqa: D102
        self.teacher.load_state_dict(student.state_dict())
        _freeze_bn_stats(self.teacher)
        self.table.invalidate()

    def state_dict(self):  # noqa: D102
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state):  # noqa: D102
        self.teacher.load_state_dict(state["teacher"])
        self.table.invalidate()


class PKD(Baseline):
    """A same-architecture teacher trained jointly on the ground truth; the student fits the
    teacher's prediction alone, as `train_pkd` of the authors' `salnas/core/trainer.py` does."""

    method = "pkd"

    def __init__(
        self,
        task: Task,
        teacher: nn.Module,
        *,
        make_optimizer: Callable[[nn.Module], tuple[torch.optim.Optimizer, Any]],
        grad_clip: float,
    ):
        super().__init__(task)
        self.teacher, self.grad_clip = teacher, grad_clip
        self.optimizer, self.scheduler = make_optimizer(teacher)

    def target(self, image, gt, batch, arch, epoch):  # noqa: D102
        activate(self.teacher, arch)
        self.teacher.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.teacher(image)
        loss = self.task.loss(out, gt, batch)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.teacher.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return self.task.prediction(out.detach())

    def state_dict(self):  # noqa: D102
        return {
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state):  # noqa: D102
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def check_method(method: str) -> str:
    if method not in METHODS:
        raise HwnasError(f"unknown distillation method '{method}'; allowed: {', '.join(METHODS)}")
    return method
