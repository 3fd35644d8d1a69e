"""What a task means to training: its ground truth, the prediction a teacher offers, the loss, the scores.

Knowledge distillation mixes ground truth and teacher prediction in one space (SalNAS Eq. 3): maps
in [0, 1] for saliency and salient objects, class probabilities for classification, per-pixel class
probabilities for segmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwnas.data.metrics.classification import top1
from hwnas.data.metrics.names import HIGHER_IS_BETTER
from hwnas.data.metrics.saliency import CenterBias, score_saliency
from hwnas.data.metrics.segmentation import class_iou, confusion_matrix, segmentation_scores
from hwnas.data.metrics.sod import score_sod
from hwnas.data.truth import Truth
from hwnas.registry import Registry
from hwnas.space.tasks import base_task, check_task
from hwnas.train.losses import (
    IGNORE,
    TRACER_WEIGHT,
    class_targets,
    salnas_loss,
    segmentation_loss,
    sod_loss,
    soft_cross_entropy,
)

Progress = Callable[[int], None] | None  # called with 1 per image scored


def resize_map(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (B, 1, H, W) map at (height, width) `size`, bilinear."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target, size=size, mode="bilinear", align_corners=False)


def at_truth_sizes(predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None) -> Iterator:
    """Each (1, H, W) prediction resized to its truth's size, as a float64 (H, W) array, one at a time."""
    for pred, truth in zip(predictions, truths, strict=True):
        yield resize_map(pred[None].float(), truth.size)[0, 0].double().numpy()
        if progress is not None:
            progress(1)


@dataclass(frozen=True)
class SaliencyTask:
    """Saliency prediction: a one-channel map in (0, 1), trained with the SalNAS loss (Eq. 4)."""

    name: str = "saliency"
    primary: str = "cc"

    @classmethod
    def of(cls, name: str, num_classes: int) -> SaliencyTask:
        return cls(name=name)

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["map"]

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output.float()

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A target at another input resolution (height, width)."""
        return resize_map(target, size)

    def loss(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return salnas_loss(output, target, batch["fix"])

    def scores(
        self,
        predictions: torch.Tensor,
        truths: Sequence[Truth],
        *,
        baseline: CenterBias | None = None,
        shuffle: str = "all",
        progress: Progress = None,
    ) -> dict[str, float]:
        """Every saliency metric of (N, 1, h, w) predictions, each resized to its truth's size."""
        return score_saliency(
            at_truth_sizes(predictions, truths, progress), (t.array() for t in truths), [t.points for t in truths],
            sizes=[t.size for t in truths], baseline=baseline, shuffle=shuffle,
        )  # fmt: skip


@dataclass(frozen=True)
class ClassificationTask:
    """Image classification: logits, soft-target cross entropy, top-1."""

    num_classes: int
    name: str = "classification"
    primary: str = "top1"

    @classmethod
    def of(cls, name: str, num_classes: int) -> ClassificationTask:
        return cls(num_classes)

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.one_hot(batch["label"], self.num_classes).float()

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return F.softmax(output.float(), dim=1)

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return target

    def loss(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return soft_cross_entropy(output, target)

    def scores(self, predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None) -> dict[str, float]:
        logits = predictions if isinstance(predictions, torch.Tensor) else torch.stack(list(predictions))
        return {"top1": top1(logits.float().numpy(), [t.label for t in truths])}


@dataclass(frozen=True)
class SodTask:
    """Salient-object detection (FocusNet): a one-channel object probability map, trained with
    FocusNet's loss (Eq. 3-4; with FOCUS the model also returns localization logits in training),
    scored by PySODMetrics. `name` is the head variant ("sod", "sod/unet+focus", ...)."""

    name: str = "sod"
    primary: str = "sm"
    weights: tuple[float, float, float] = (TRACER_WEIGHT,) * 3

    @classmethod
    def of(cls, name: str, num_classes: int) -> SodTask:
        return cls(name=name)

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["mask"]

    def prediction(self, output: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (output[0] if isinstance(output, tuple) else output).float()

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_map(target, size)

    def loss(self, output, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        located = output[1] if isinstance(output, tuple) else None
        return sod_loss(self.prediction(output), target, batch["mask"], located=located, weights=self.weights)

    def scores(self, predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None) -> dict[str, float]:
        """PySODMetrics' scores of (N, 1, h, w) predictions, each resized to its mask's size."""
        return score_sod(at_truth_sizes(predictions, truths, progress), (t.array() for t in truths))


def class_maps(predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None) -> Iterator:
    """Each (C, h, w) class-probability prediction resized (bilinear) to its truth's size, as the
    (H, W) map of its most probable class, one at a time."""
    for pred, truth in zip(predictions, truths, strict=True):
        probs = pred[None].float()
        if tuple(probs.shape[-2:]) != tuple(truth.size):
            probs = F.interpolate(probs, size=truth.size, mode="bilinear", align_corners=False)
        yield probs[0].argmax(0).numpy()
        if progress is not None:
            progress(1)


@dataclass(frozen=True)
class SegmentationTask:
    """Semantic segmentation (MoSegNAS): per-pixel class logits, pixel cross entropy with an ignore
    label (plus BiSeNet's auxiliary heads' for "segmentation+aux"), scored by mIoU over one
    confusion matrix of the split at the labels' resolution (Cityscapes' evaluation)."""

    num_classes: int
    name: str = "segmentation"
    primary: str = "miou"
    ohem: float = 0.0  # online hard example mining threshold (`segmentation_loss`); 0: plain cross entropy

    @classmethod
    def of(cls, name: str, num_classes: int) -> SegmentationTask:
        return cls(num_classes, name=name)

    def gt(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return class_targets(batch["seg"], self.num_classes)

    def prediction(self, output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        return F.softmax((output[0] if isinstance(output, tuple) else output).float(), dim=1)

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(target.shape[-2:]) == tuple(size):
            return target
        return F.interpolate(target, size=size, mode="bilinear", align_corners=False)

    def loss(self, output, target: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        main, *aux = output if isinstance(output, tuple) else (output,)
        labelled = batch["seg"].reshape(len(target), *target.shape[-2:]) != IGNORE
        return segmentation_loss(main, target, labelled, tuple(aux), ohem=self.ohem)

    def confusion(self, predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None):
        """The split's confusion matrix, each prediction resized to its label map's size."""
        return confusion_matrix(class_maps(predictions, truths, progress), (t.array() for t in truths),
                                self.num_classes, ignore=IGNORE)  # fmt: skip

    def scores(self, predictions: torch.Tensor, truths: Sequence[Truth], progress: Progress = None) -> dict[str, float]:
        """mIoU, pixel accuracy and each class's IoU (`iou/<id>`, NaN where a class is absent)."""
        matrix = self.confusion(predictions, truths, progress)
        per_class = {f"iou/{c}": float(v) for c, v in enumerate(class_iou(matrix))}
        return {**segmentation_scores(matrix), **per_class}


Task = SaliencyTask | ClassificationTask | SodTask | SegmentationTask


TASKS: Registry[type[Task]] = Registry(  # a task's base name (`hwnas.space.tasks.base_task`) -> its class
    "task",
    {"saliency": SaliencyTask, "classification": ClassificationTask, "sod": SodTask, "segmentation": SegmentationTask},
)


def make_task(name: str, num_classes: int = 1) -> Task:
    """The task of a head name ("saliency", "sod/unet+focus", "segmentation+aux", ...): its class from
    `TASKS`, built with `num_classes` where the head has classes."""
    return TASKS.get(base_task(check_task(name))).of(name, num_classes)


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER.get(metric, metric != "loss")


__all__ = [
    "TASKS",
    "SaliencyTask",
    "ClassificationTask",
    "SodTask",
    "SegmentationTask",
    "Task",
    "make_task",
    "higher_is_better",
]
