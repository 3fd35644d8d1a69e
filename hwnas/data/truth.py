"""`Truth`: one image's ground truth at its original size, what the benchmarks score against.

Saliency benchmarks (MIT/Tuebingen, SALICON) and the SOD evaluators score a prediction at each
image's original size, on the original fixation coordinates or mask; the model runs at its input
resolution and its output is resized up to that size first. A folder dataset keeps a `Truth` per
validation and test image for that (its dense map or mask is read from disk when scored, so a large
validation set stays small in memory); built-in sets, made at the size they are asked for, derive
theirs from the stored split (`stored_truths`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Truth:
    """`size` (height, width); saliency: `points`, the fixations as integer rows (y, x), repeated as
    often as they occur, and `dense` the continuous map (uint8 or float); SOD: `dense` the binary
    mask; segmentation: `dense` the class-id map (uint8, 255 ignored); classification: `label`.
    `dense` is an array or a function that reads it."""

    name: str
    size: tuple[int, int]
    points: np.ndarray | None = None
    dense: np.ndarray | Callable[[], np.ndarray] | None = None
    label: int | None = None

    def array(self) -> np.ndarray:
        """The dense map or mask, read now if it lives on disk."""
        value = self.dense() if callable(self.dense) else self.dense
        if value is None:
            raise ValueError(f"{self.name} has no dense ground truth")
        return np.asarray(value)


def points_of(fix: torch.Tensor | np.ndarray) -> np.ndarray:
    """The fixated pixels of a binary (H, W) map as rows (y, x)."""
    return np.argwhere(np.asarray(fix) > 0).astype(np.int64)


def stored_truths(fields: dict[str, torch.Tensor], names: list[str] | None = None) -> list[Truth]:
    """The truths of a split as stored (its resolution): maps and fixation maps, masks or labels."""
    n = len(next(iter(fields.values())))
    names = names or [str(i) for i in range(n)]
    out = []
    for i in range(n):
        if "label" in fields:
            out.append(Truth(names[i], (0, 0), label=int(fields["label"][i])))
        elif "seg" in fields:
            seg = fields["seg"][i, 0].numpy()
            out.append(Truth(names[i], seg.shape, dense=seg))
        elif "mask" in fields:
            mask = fields["mask"][i, 0].numpy() > 127
            out.append(Truth(names[i], mask.shape, dense=mask))
        else:
            sal = fields["map"][i, 0].numpy()
            out.append(Truth(names[i], sal.shape, points=points_of(fields["fix"][i, 0]), dense=sal))
    return out


__all__ = ["Truth", "points_of", "stored_truths"]
