"""Reading a saliency dataset's split (any `hwnas.data.layout` format) into a `Split`.

Images, maps and fixation maps are stored resized to the requested resolution (fixations moved to
their scaled pixels); each image's original-size ground truth is kept as a `Truth` (its fixations
as read, its map read again from disk when scored), for scoring as the benchmarks do. An image's map
and fixation matrix must have its size; an image must have at least one fixation inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from hwnas.data.fixations import density, inside, read_cat2000_mat, read_fixation_image, read_salicon_mat
from hwnas.data.images import image_size, read_image, size_text
from hwnas.data.layout import Item, Layout
from hwnas.data.split import DataError, Split, read_split, resize_fixations, resize_uint8
from hwnas.data.truth import Truth


def _points(layout: Layout, item: Item, size: tuple[int, int]) -> np.ndarray:
    if item.points is not None:
        return item.points
    path = item.fixations
    if path.suffix.lower() == ".mat":
        if layout.format == "CAT2000":
            pts, shape = read_cat2000_mat(path)
            if shape != size:
                raise DataError(
                    f"{layout.format} dataset {layout.root}: {item.image.name} is {size_text(size)} but its fixations "
                    f"{path.name} are {size_text(shape)}; a fixation matrix must have its image's size"
                )
            return pts
        return read_salicon_mat(path)
    fix = read_image(path, "L")
    if fix.shape != size:
        raise DataError(
            f"{layout.format} dataset {layout.root}: {item.image.name} is {size_text(size)} but its fixation map "
            f"{path.name} is {size_text(fix.shape)}; a map must have its image's size"
        )
    return read_fixation_image(path, layout.fixation_threshold)


def _map_reader(layout: Layout, item: Item, points: np.ndarray, size: tuple[int, int]) -> Callable[[], np.ndarray]:
    if layout.map_sigma is not None:
        return partial(density, points, size, layout.map_sigma * size[1])
    return partial(read_image, item.target, "L")


def truth_of(layout: Layout, item: Item, labelled: bool, size: tuple[int, int] | None = None) -> Truth:
    """An image's original-size `Truth` (its fixations read now, its map when scored), reading the
    image's header only (or nothing, given its (height, width) `size`) and its map's, checked."""
    size = size or image_size(item.image)
    if not labelled:
        return Truth(item.name, size)
    kept = inside(_points(layout, item, size), size)
    if len(kept) == 0:
        where = item.fixations.name if item.fixations is not None else "the fixations file"
        raise DataError(f"{layout.format} dataset {layout.root}: {where} has no fixations inside {item.image.name}")
    if layout.map_sigma is None:
        _check_map(layout, item, size, image_size(item.target))
    return Truth(item.name, size, points=kept, dense=_map_reader(layout, item, kept, size))


def _check_map(layout: Layout, item: Item, size: tuple[int, int], shape: tuple[int, ...]) -> None:
    if tuple(shape[:2]) != tuple(size):
        raise DataError(
            f"{layout.format} dataset {layout.root}: {item.image.name} is {size_text(size)} but its map "
            f"{item.target.name} is {size_text(shape)}; a map must have its image's size"
        )


def load_item(layout: Layout, item: Item, labelled: bool) -> tuple[np.ndarray, Truth]:
    """One image (uint8 H x W x 3) and its original-size `Truth`, checked."""
    img = read_image(item.image, "RGB")
    size = img.shape[:2]
    truth = truth_of(layout, item, labelled, size)
    if labelled:
        _check_map(layout, item, size, truth.array().shape)
    return img, truth


def fields_of(truth: Truth, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A saliency truth's stored fields at (height, width) `size`: "map" (uint8, bilinear) and "fix"
    (bool, each fixation at its scaled pixel); none for an image without ground truth."""
    if truth.points is None:
        return {}
    sal = truth.array()
    sal = np.round(sal * 255).astype(np.uint8) if sal.dtype != np.uint8 else sal
    binary = torch.zeros((1, 1, *truth.size), dtype=torch.bool)
    binary[0, 0, truth.points[:, 0], truth.points[:, 1]] = True
    return {"map": resize_uint8(torch.from_numpy(sal)[None, None], size)[0], "fix": resize_fixations(binary, size)[0]}


def fixations_only(layout: Layout, which: str) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Every image's fixations and (height, width), reading only image headers and fixation files
    (for a centre bias of a whole training split)."""
    points, sizes = [], []
    for item in layout.items(which):
        size = image_size(item.image)
        points.append(inside(_points(layout, item, size), size))
        sizes.append(size)
    return points, sizes


def read_saliency(
    layout: Layout, which: str, size: tuple[int, int], *, limit: int | None = None, progress=None
) -> Split:
    """The `which` split of `layout` at (height, width) `size`, in memory, with original-size truths."""
    items = layout.items(which)[:limit] if limit else layout.items(which)
    load = partial(load_item, layout, labelled=which in layout.labelled)
    return read_split(items, size, load, fields_of, progress=progress)


__all__ = ["fields_of", "fixations_only", "load_item", "read_saliency", "truth_of"]
