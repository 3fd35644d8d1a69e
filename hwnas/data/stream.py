"""`FolderSplit`: a dataset folder's split read from disk an image at a time, as it is used.

A `torch.utils.data.Dataset` over a layout's items: each row is decoded, resized and (in training)
augmented in `DataLoader` worker processes, so a split needs memory for the batches in flight, not
for its images. It hands out exactly what the in-memory `Split` read from the same files holds:
the same per-item functions (`ItemReader`) make both, and a row at another resolution is resized
from the split's stored size as `Split.resized` does. Making one reads what the edge checks need
and no pixels: every image's and ground truth's header, and fixations (each image's original-size
`Truth`, whose map, mask or label map is read when scored).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from hwnas.data.split import DataError, Step, image_at, resize_rows

MAX_WORKERS = 8  # decoding processes per loader


def default_workers() -> int:
    """Worker processes for a loader: one per core this process may use, up to `MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


@dataclass(frozen=True)
class ItemReader:
    """How a task reads one item of a layout: `load(item)` the image (uint8 H x W x 3) and its
    checked original-size `Truth`; `truth(item)` the `Truth` alone (image header, fixations);
    `fields(truth, size)` its stored fields at (height, width)."""

    load: Callable
    truth: Callable
    fields: Callable


def item_reader(layout, which: str) -> ItemReader:
    """The `ItemReader` of `layout`'s `which` split (its task's `load_item`, `truth_of`, `fields_of`)."""
    if layout.task == "sod":
        from hwnas.data import sod as module
    elif layout.task == "segmentation":
        from hwnas.data import segmentation as module
    else:
        from hwnas.data import saliency as module
    labelled = which in layout.labelled
    return ItemReader(
        load=partial(module.load_item, layout, labelled=labelled),
        truth=partial(module.truth_of, layout, labelled=labelled),
        fields=module.fields_of,
    )


@dataclass(frozen=True, eq=False)
class FolderSplit(Dataset):
    """The rows of `items`, read with `reader`, stored at (height, width) `stored` and handed out at
    `size` (resized from `stored`, as the in-memory split is); `truths` each item's original-size
    `Truth` (`ItemReader.truth`); `labelled` when the split has ground truth; `workers` decoding
    processes per loader."""

    reader: ItemReader
    items: tuple
    truths: tuple
    stored: tuple[int, int]
    labelled: bool
    size: tuple[int, int] = None  # type: ignore[assignment]  # defaults to `stored`
    workers: int = field(default_factory=default_workers)

    @classmethod
    def read(cls, reader: ItemReader, items: list, *, stored: tuple[int, int], labelled: bool) -> FolderSplit:
        """The split of `items`, checked now as far as headers tell (every image opens, every map,
        mask or label map has its image's size, fixations parse): what a file holds is checked when
        its row is read."""
        return cls(reader=reader, items=tuple(items), truths=tuple(reader.truth(item) for item in items),
                   stored=tuple(stored), labelled=labelled)  # fmt: skip

    def __post_init__(self) -> None:
        if self.size is None:
            object.__setattr__(self, "size", tuple(self.stored))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        """Row `i`: its uint8 (3, h, w) image and stored fields, each (1, h, w), at `size`."""
        return self._at_size(self.stored_row(i))

    def stored_row(self, i: int) -> dict[str, torch.Tensor]:
        """Row `i` decoded and at the stored size, as the in-memory split holds it."""
        img, truth = self.reader.load(self.items[i])
        return {"image": image_at(img, self.stored), **self.reader.fields(truth, self.stored)}

    def fields_at(self, i: int) -> dict[str, torch.Tensor]:
        """Row `i`'s stored fields at `size`, read from its ground truth alone (no image decoded)."""
        return self._at_size(self.reader.fields(self.truths[i], self.stored))

    def _at_size(self, row: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.size == self.stored:
            return row
        return {k: v[0] for k, v in resize_rows({k: v[None] for k, v in row.items()}, self.size).items()}

    def resized(self, size: tuple[int, int]) -> FolderSplit:
        """The same rows at (height, width) `size`."""
        return replace(self, size=tuple(size))

    def subset(self, indices: np.ndarray | list[int]) -> FolderSplit:
        rows = [int(i) for i in indices]
        return replace(self, items=tuple(self.items[i] for i in rows), truths=tuple(self.truths[i] for i in rows))

    def __add__(self, other: FolderSplit) -> FolderSplit:
        """The rows of both splits (of one layout, both labelled or both not, at the same size)."""
        same = isinstance(other, FolderSplit) and (other.stored, other.size, other.labelled) == (
            self.stored, self.size, self.labelled)  # fmt: skip
        if not same:
            raise ValueError("a split read from disk adds only to another of the same layout and size")
        return replace(self, items=self.items + other.items, truths=self.truths + other.truths)

    def rows(self, index: np.ndarray | list[int] | slice) -> dict[str, torch.Tensor]:
        """The uint8 images ("image") and stored fields of the given rows, read now in this process."""
        if isinstance(index, slice):
            index = range(len(self))[index]
        return default_collate([self[int(i)] for i in index])

    def loader(self, batch_size: int, *, pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Every row in order, `batch_size` at a time, read by `workers` worker processes (pinned
        for a CUDA device with `pin`)."""
        return _one_line(_loader(self, batch_size=batch_size, num_workers=self.workers, pin_memory=pin))

    def steps(self, plan: list[Step], *, pin: bool = False) -> Iterator[dict]:
        """Each training step of `plan` (`DataSet.training_batches`), read by worker processes."""
        return step_loader(self, plan, pin=pin)

    def ground_truth(self, *, original: bool = True) -> Sequence:
        """Each image's ground truth at its original size, or (`original=False`) at `size`, read
        an image at a time as the sequence is used (`Split.ground_truth`)."""
        if original:
            return list(self.truths)
        return _TruthsAt(self)


class _Steps(Dataset):
    """A training plan's `Step`s as items: each its rows, decoded once, at each of its resolutions."""

    def __init__(self, split: FolderSplit, plan: list[Step]):
        self.split, self.plan = split, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, s: int) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
        step = self.plan[s]
        at = step.at_sizes(default_collate([self.split.stored_row(int(i)) for i in step.rows]))
        return {r: at[(r[1], r[0])] for r in step.resolutions}


def step_loader(split: FolderSplit, plan: list[Step], *, pin: bool = False) -> Iterator[dict]:
    """Each step of `plan` read by `split.workers` worker processes, in order (`DataSet.training_batches`)."""
    return _one_line(_loader(_Steps(split, plan), batch_size=None, num_workers=split.workers, pin_memory=pin))


def _loader(dataset: Dataset, **options) -> DataLoader:
    """A DataLoader with a generator of its own: making its iterator draws a seed for the workers,
    which from torch's global generator would shift the trainer's dropout and augmentation draws
    (the rows need no randomness: scale-and-crop is seeded by its `Step`)."""
    return DataLoader(dataset, generator=torch.Generator().manual_seed(0), **options)


def _one_line(loader: DataLoader) -> Iterator:
    """The loader's batches; a `DataError` raised in a worker (a file that does not decode, a mask
    that is not binary) comes out as itself, its one line, not torch's wrapped traceback."""
    try:
        yield from loader
    except DataError as exc:
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        raise DataError(text.rstrip().rsplit("DataError: ", 1)[-1]) from None


class _TruthsAt(Sequence):
    """A folder split's truths at its `size` (`stored_truths` of each row's fields), read when indexed."""

    def __init__(self, split: FolderSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):  # type: ignore[override]
        from hwnas.data.truth import stored_truths

        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if not 0 <= i < len(self):
            raise IndexError(i)
        return stored_truths({k: v[None] for k, v in self.split.fields_at(i).items()}, [self.split.items[i].name])[0]


__all__ = ["FolderSplit", "ItemReader", "default_workers", "item_reader", "step_loader"]
