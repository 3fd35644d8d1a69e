"""`hwnas data check ROOT`: what a dataset folder holds, read file by file before anyone trains on it.

Every image and its ground truth is read and checked as training and evaluation read them (a
problem is the same one-line `DataError`); the report gives the format, each split's image count,
whether it has ground truth, the image sizes and the fixations or object area per image (segmentation:
the classes its labels hold and the share of pixels not ignored).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.data.layout import Layout, find_all


@dataclass(frozen=True)
class SplitReport:
    """One split of a dataset as read."""

    name: str
    images: int
    labelled: bool
    sizes: tuple[tuple[tuple[int, int], int], ...]  # ((height, width), count), most common first
    fixations_per_image: float | None = None  # saliency
    object_fraction: float | None = None  # SOD: the mean fraction of a mask's pixels that are object
    classes_present: int | None = None  # segmentation: how many classes the split's labels hold
    labelled_fraction: float | None = None  # segmentation: the fraction of pixels not ignored (255)

    @property
    def size_range(self) -> str:
        """'640x480' or '300x400 .. 500x400 (12 sizes)', widths first."""
        sizes = sorted(s for s, _ in self.sizes)
        text = lambda s: f"{s[1]}x{s[0]}"  # noqa: E731
        if len(sizes) == 1:
            return text(sizes[0])
        return f"{text(sizes[0])} .. {text(sizes[-1])} ({len(sizes)} sizes; most {text(self.sizes[0][0])})"


@dataclass(frozen=True)
class DataReport:
    """A dataset folder: its format, task, splits and how it is read."""

    format: str
    task: str
    root: Path
    splits: tuple[SplitReport, ...]
    notes: tuple[str, ...]
    classes: tuple[str, ...] = ()  # segmentation: the class list

    def to_dict(self) -> dict:
        return {
            "format": self.format, "task": self.task, "root": str(self.root), "notes": list(self.notes),
            "classes": list(self.classes),
            "splits": [
                {"name": s.name, "images": s.images, "labelled": s.labelled,
                 "sizes": [{"height": h, "width": w, "images": n} for (h, w), n in s.sizes],
                 "fixations_per_image": s.fixations_per_image, "object_fraction": s.object_fraction,
                 "classes_present": s.classes_present, "labelled_fraction": s.labelled_fraction}
                for s in self.splits
            ],
        }  # fmt: skip


def _segmentation_report(layout: Layout, which: str, progress: Callable[[int], None] | None) -> SplitReport:
    from hwnas.data import segmentation

    labelled, sizes, present, pixels, kept = which in layout.labelled, Counter(), set(), 0, 0
    for item in layout.items(which):
        _, truth = segmentation.load_item(layout, item)
        if labelled:
            labels = truth.array()
            present.update(np.unique(labels[labels != segmentation.IGNORE]).tolist())
            pixels, kept = pixels + labels.size, kept + int((labels != segmentation.IGNORE).sum())
        sizes[truth.size] += 1
        if progress is not None:
            progress(1)
    return SplitReport(
        which, sum(sizes.values()), labelled, tuple(sizes.most_common()),
        classes_present=len(present) if labelled else None, labelled_fraction=kept / pixels if pixels else None,
    )  # fmt: skip


def _split_report(layout: Layout, which: str, progress: Callable[[int], None] | None) -> SplitReport:
    from hwnas.data import saliency, sod

    if layout.task == "segmentation":
        return _segmentation_report(layout, which, progress)
    labelled = which in layout.labelled
    sizes: Counter = Counter()
    amounts = []
    for item in layout.items(which):
        if layout.task == "sod":
            _, truth = sod.load_item(layout, item)
            amounts.append(float(truth.array().mean()))
        else:
            _, truth = saliency.load_item(layout, item, labelled)
            if labelled:
                amounts.append(len(truth.points))
        sizes[truth.size] += 1
        if progress is not None:
            progress(1)
    mean = float(np.mean(amounts)) if amounts else None
    return SplitReport(
        which, sum(sizes.values()), labelled, tuple(sizes.most_common()),
        fixations_per_image=mean if layout.task == "saliency" and labelled else None,
        object_fraction=mean if layout.task == "sod" else None,
    )  # fmt: skip


def check(root: str | Path, *, progress: Callable[[str, int], Callable[[int], None]] | None = None) -> list[DataReport]:
    """A `DataReport` per dataset at `root` (one, or each of a folder of datasets), every file read.

    `progress(label, total)` returns the callback each read image advances by one.
    """
    reports = []
    for layout in find_all(root):
        splits = []
        for which, items in layout.splits.items():
            step = progress(f"{layout.format} {which}", len(items)) if progress else None
            splits.append(_split_report(layout, which, step))
        reports.append(DataReport(layout.format, layout.task, layout.root, tuple(splits), layout.notes, layout.classes))
    return reports


__all__ = ["DataReport", "SplitReport", "check"]
