"""A quantized artifact judged by the task's metric: each file run in its runtime on the validation
split, scored as `hwnas evaluate` scores (CC/KLD/NSS/sAUC..., MAE/F-measure, mIoU, top-1) at the
subnet's input size, beside the fp32 extract's scores on the same images; `--max-drop METRIC=VALUE`
fails an export whose drop exceeds it. A drop is how much worse the artifact is: fp32 - artifact for
a metric where higher is better, artifact - fp32 for KLD and MAE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from hwnas.data import DataSet
from hwnas.data.metrics.names import HIGHER_IS_BETTER, SALIENCY_METRICS, SEGMENTATION_METRICS, SOD_METRICS
from hwnas.errors import HwnasError
from hwnas.hardware.backends import Runnable
from hwnas.space import Arch
from hwnas.space.tasks import base_task
from hwnas.train.evaluation import Predictions, score
from hwnas.train.task import Task

AGREEMENT_IMAGES = 32  # images whose outputs the runtimes' artifacts are compared on
METRICS = {"saliency": SALIENCY_METRICS, "sod": SOD_METRICS, "segmentation": SEGMENTATION_METRICS,
           "classification": ("top1",)}  # fmt: skip


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics `task`'s scores carry (what `--max-drop` may name)."""
    return METRICS[base_task(task)]


def parse_max_drops(values: list[str], metrics: tuple[str, ...]) -> dict[str, float]:
    """`cc=0.02` items -> {metric: largest allowed drop}; one line naming the task's metrics if not."""
    drops: dict[str, float] = {}
    for value in values:
        metric, sep, number = value.partition("=")
        metric = metric.strip().lower()
        if not sep or metric not in metrics:
            raise HwnasError(
                f"--max-drop '{value}' must be METRIC=VALUE with METRIC one of this task's: {', '.join(metrics)}"
            )
        try:
            drops[metric] = float(number)
        except ValueError:
            raise HwnasError(f"--max-drop '{value}': '{number}' is not a number") from None
        if not np.isfinite(drops[metric]) or drops[metric] < 0:
            raise HwnasError(f"--max-drop '{value}' must allow a drop of zero or more")
    return drops


def drop(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (positive: worse)."""
    return reference - value if HIGHER_IS_BETTER.get(metric, True) else value - reference


class RuntimeNet(nn.Module):
    """An artifact in its runtime behind the interface `Predictions` scores: one image at a time
    (the artifact's fixed batch of 1), real-valued outputs as torch tensors on the CPU."""

    def __init__(self, runnable: Runnable, arch: Arch):
        super().__init__()
        self.runnable, self.arch = runnable, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.runnable.run([x[i : i + 1].numpy()])[0] for i in range(len(x))]
        return torch.from_numpy(np.concatenate(outputs))


@dataclass
class TaskScores:
    """The scores of the fp32 extract and of each artifact on the same images, and the drops."""

    data: str
    images: int
    reference: dict[str, float]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # format -> metric -> value
    drops: dict[str, dict[str, float]] = field(default_factory=dict)
    max_drop: dict[str, float] = field(default_factory=dict)

    def exceeded(self, fmt: str) -> list[str]:
        """One line per metric whose drop in `fmt` exceeds its `max_drop`."""
        return [
            f"{m} dropped {self.drops[fmt][m]:.4g} > {limit:g} allowed"
            for m, limit in self.max_drop.items()
            if fmt in self.drops and self.drops[fmt].get(m, 0.0) > limit
        ]

    def of(self, fmt: str) -> dict:
        """What one artifact's manifest records."""
        return {
            "data": self.data,
            "images": self.images,
            "fp32": self.reference,
            "scores": self.scores.get(fmt, {}),
            "drops": self.drops.get(fmt, {}),
            "max_drop": self.max_drop,
            "exceeded": self.exceeded(fmt),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _headline(scores: dict[str, float]) -> dict[str, float]:
    """The task's metrics (per-class IoUs left out)."""
    return {k: float(v) for k, v in scores.items() if "/" not in k and k != "loss"}


def task_scores(
    net: nn.Module, data: DataSet, task: Task, *, resolution: tuple[int, int], batch_size: int = 16
) -> dict[str, float]:
    """The task's metrics of `net` (a torch module or a `RuntimeNet`) on `data`'s validation split."""
    predictions = Predictions(net, data, task, "val", batch_size=batch_size)
    return _headline(score(task, data, predictions, "val", resolution=resolution))


def outputs_on(runnable: Runnable, images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([runnable.run([x])[0] for x in images])


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How close two artifacts' outputs on the same images are: the largest and mean absolute
    difference over the outputs' range, and their Pearson correlation."""
    spread = float(max(a.max(), b.max()) - min(a.min(), b.min())) or 1.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"max_abs_of_range": float(diff.max()) / spread, "mean_abs_of_range": float(diff.mean()) / spread,
            "pearson": corr, "images": len(a)}  # fmt: skip
