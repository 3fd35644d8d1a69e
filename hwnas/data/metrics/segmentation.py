"""Semantic segmentation's mIoU and pixel accuracy as Cityscapes' evaluation computes them: one
confusion matrix over a split (`confusion_matrix`, accumulated by torchmetrics), then
`segmentation_scores`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hwnas.errors import HwnasError


def confusion_matrix(
    predictions: Iterable[np.ndarray], labels: Iterable[np.ndarray], classes: int, *, ignore: int = 255
) -> np.ndarray:
    """The (classes, classes) pixel confusion matrix (rows: ground truth, columns: prediction) over
    a whole split, pixels labelled `ignore` left out: Cityscapes' `evalPixelLevelSemanticLabeling.py`
    accumulates one such matrix over every image at its label's resolution. Accumulated by
    torchmetrics' `MulticlassConfusionMatrix`; each prediction must have its label's shape."""
    try:
        import torch
        from torchmetrics.classification import MulticlassConfusionMatrix
    except ImportError:
        raise HwnasError("the segmentation metrics need torchmetrics: pip install 'hwnas[seg]'") from None
    matrix = MulticlassConfusionMatrix(classes, ignore_index=ignore, validate_args=False)
    for pred, label in zip(predictions, labels, strict=True):
        if pred.shape != label.shape:
            raise ValueError(f"a prediction of shape {pred.shape} for a label of shape {label.shape}")
        matrix.update(torch.as_tensor(np.asarray(pred), dtype=torch.long).flatten(),
                      torch.as_tensor(np.asarray(label), dtype=torch.long).flatten())  # fmt: skip
    return matrix.compute().numpy().astype(np.int64)


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN) from a confusion matrix; NaN for a class that is neither
    in the ground truth nor predicted (Cityscapes leaves such a class out of the mean)."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def segmentation_scores(matrix: np.ndarray) -> dict[str, float]:
    """mIoU (MoSegNAS Section IV-B: the mean of the per-class IoUs, over the classes that occur) and
    pixel accuracy (labelled pixels classified right) of a confusion matrix."""
    iou = class_iou(matrix)
    total = matrix.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_acc": float(np.trace(matrix) / total) if total else float("nan"),
    }
