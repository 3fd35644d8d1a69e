"""What a task means to training: its ground truth, the prediction a teacher offers, the loss, the scores.

Knowledge distillation mixes ground truth and teacher prediction in one space (SalNAS Eq. 3): maps
in [0, 1] for saliency, class probabilities for classification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwnas.errors import HwnasError
from hwnas.train.losses import salnas_loss, soft_cross_entropy
from hwnas.train.metrics import HIGHER_IS_BETTER, score_saliency, top1


@dataclass(frozen=True)
class SaliencyTask:
    """Saliency prediction: a one-channel map in (0, 1), trained with the SalNAS loss (Eq. 4)."""

    name: str = "saliency"
    primary: str = "cc"

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["map"]

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output.float()

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A target at another input resolution (height, width)."""
        if tuple(target.shape[-2:]) == tuple(size):
            return target
        return F.interpolate(target, size=size, mode="bilinear", align_corners=False)

    def loss(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return salnas_loss(output, target, batch["fix"])

    def scores(self, outputs: Sequence[torch.Tensor], batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
        cat = lambda key: torch.cat([b[key] for b in batches]).numpy()  # noqa: E731
        return score_saliency(torch.cat(list(outputs)).float().numpy(), cat("map"), cat("fix"))


@dataclass(frozen=True)
class ClassificationTask:
    """Image classification: logits, soft-target cross entropy, top-1."""

    num_classes: int
    name: str = "classification"
    primary: str = "top1"

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.one_hot(batch["label"], self.num_classes).float()

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return F.softmax(output.float(), dim=1)

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return target

    def loss(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return soft_cross_entropy(output, target)

    def scores(self, outputs: Sequence[torch.Tensor], batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
        labels = torch.cat([b["label"] for b in batches]).numpy()
        return {"top1": top1(torch.cat(list(outputs)).float().numpy(), labels)}


Task = SaliencyTask | ClassificationTask


def make_task(name: str, num_classes: int = 1) -> Task:
    if name == "saliency":
        return SaliencyTask()
    if name == "classification":
        return ClassificationTask(num_classes)
    raise HwnasError(f"training has no task '{name}'; allowed: saliency, classification")


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER.get(metric, metric != "loss")


__all__ = ["SaliencyTask", "ClassificationTask", "Task", "make_task", "higher_is_better"]
