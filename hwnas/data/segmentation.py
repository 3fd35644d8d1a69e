"""Semantic segmentation data: procedural multi-class scenes, and reading a dataset folder's split
(Cityscapes, PASCAL VOC with SBD, COCO-Stuff-10K, images + masks with a class list:
`hwnas.data.layout`).

Both give a `Split` whose images are uint8 (N, 3, H, W) and whose field "seg" is uint8 (N, 1, H, W)
class ids, `IGNORE` (255) where a pixel is not evaluated. A folder's images are resized bilinearly to
the requested resolution and their label maps by nearest neighbour; each original-size label map is
kept as a `Truth`, for mIoU at the labels' resolution as Cityscapes' evaluation computes it. A label
map must have its image's size, and every value in it must be a class id of the list or 255
(Cityscapes: a label id 0..33, mapped to its train id; COCO-Stuff: 0..182, mapped to its 171
classes).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from hwnas.data.images import check_same_size, image_size, read_image
from hwnas.data.layout import Item, Layout
from hwnas.data.sod import random_shape
from hwnas.data.split import DataError, Split, read_split, resize_labels
from hwnas.data.synthetic import render_scenes, smooth_background
from hwnas.data.truth import Truth
from hwnas.space.tasks import IGNORE

SYNTHETIC_CLASSES = ("background", "disk", "box", "bar")
_HUES = {1: 0, 2: 1, 3: 2}  # the colour channel each object class favours


# ---- procedural scenes -------------------------------------------------------------------------
def _object(rng: np.random.Generator, h: int, w: int, cls: int, scale: float) -> np.ndarray:
    """A bool (h, w) region of class `cls`: a disk, an axis-aligned box, or a long thin rotated bar."""
    cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if cls == 1:
        r = max(rng.uniform(4, 10) * scale, 1.0)
        region = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif cls == 2:
        a, b = (max(rng.uniform(4, 10) * scale, 1.0) for _ in range(2))
        region = (np.abs(yy - cy) <= a) & (np.abs(xx - cx) <= b)
    else:
        theta, length, width = rng.uniform(0, np.pi), rng.uniform(10, 22) * scale, max(1.5 * scale, 1.0)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        region = (np.abs(u) <= length) & (np.abs(v) <= width)
    if not region.any():
        region[min(int(cy), h - 1), min(int(cx), w - 1)] = True
    return region


def _colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    """A saturated colour that favours the class's channel; one object in four takes any channel,
    so shape tells what colour alone does not."""
    colour = np.full(3, rng.uniform(0.0, 0.35))
    channel = _HUES[cls] if rng.uniform() >= 0.25 else int(rng.integers(0, 3))
    colour[channel] = rng.uniform(0.75, 1.0)
    return colour


def _segmentation_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    img = smooth_background(rng, h, w)
    labels = np.zeros((h, w), dtype=np.uint8)
    scale = min(h, w) / 64
    for _ in range(rng.integers(3, 7)):  # objects, later ones in front
        cls = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        region = _object(rng, h, w, cls, scale)
        img[:, region] = _colour(rng, cls)[:, None] + rng.normal(0, 0.03, size=(3, int(region.sum())))
        labels[region] = cls
    if rng.uniform() < 0.5:  # an unlabelled blob, as Cityscapes leaves some regions out of the evaluation
        region = random_shape(rng, h, w, rng.uniform(0, h), rng.uniform(0, w), 2 * scale, 5 * scale)
        img[:, region] = rng.uniform(0, 1, size=(3, int(region.sum())))
        labels[region] = IGNORE
    return np.clip(img, 0, 1), labels


def synthetic_segmentation(n: int, *, size: tuple[int, int] = (64, 64), seed: int = 0) -> Split:
    """`n` scenes of (height, width) `size` with the classes of `SYNTHETIC_CLASSES`: a smooth
    desaturated background and three to six disks, boxes and thin bars, each class with its own
    favoured colour (one object in four has another's), sometimes an unlabelled noise blob (255).
    Image i depends only on (seed, i)."""
    return render_scenes(n, size, seed, _segmentation_scene, "seg")


# ---- dataset folders ---------------------------------------------------------------------------
def _image_labels(layout: Layout, path: Path) -> np.ndarray:
    """A single-channel image's values, or a palette image's indices."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DataError(
                    f"{layout.format} dataset {layout.root}: label map {path.name} is a {img.mode} image; label maps "
                    "must be single-channel class ids (or a palette image's indices)"
                )
            return np.array(img).astype(np.int64)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read label map {path}: {exc}") from None


def _mat_labels(layout: Layout, path: Path) -> np.ndarray:
    """The 2-D integer array in field `layout.label_field` of a MATLAB file (dots go into structs:
    SBD's `GTcls.Segmentation`, COCO-Stuff's `S`), read with scipy (no pickles)."""
    from scipy.io import loadmat

    field = layout.label_field or ""
    try:
        value = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise DataError(f"cannot read label file {path}: {exc}") from None
    try:
        first, *rest = field.split(".")
        value = value[first]
        for name in rest:
            value = getattr(value, name)
    except (KeyError, AttributeError):
        raise DataError(f"{layout.format} dataset {layout.root}: label file {path.name} has no field {field}") from None
    value = np.asarray(value)
    if value.ndim != 2 or not np.issubdtype(value.dtype, np.integer):
        raise DataError(
            f"{layout.format} dataset {layout.root}: field {field} of {path.name} is not a 2-D map of integer ids"
        )
    return value.astype(np.int64)


def read_labels(layout: Layout, path: Path) -> np.ndarray:
    """A label map as uint8 class ids (255 ignored), checked against the layout's classes.

    A single-channel image's values, a palette image's indices, or a .mat file's field
    (`Layout.label_field`) are the ids as stored (Cityscapes' label ids and COCO-Stuff's are mapped
    through `Layout.label_ids` here); anything else, or an id outside the list, is a `DataError`."""
    raw = _mat_labels(layout, path) if path.suffix == ".mat" else _image_labels(layout, path)
    table = layout.label_ids
    allowed = len(table) if table is not None else len(layout.classes)
    outside = (raw < 0) | (raw >= allowed)
    if table is None:
        outside &= raw != IGNORE
    bad = np.unique(raw[outside])
    if bad.size:
        classes = f"class ids 0..{allowed - 1} ({len(layout.classes)} classes)"
        what = f"label ids 0..{allowed - 1}" if table is not None else classes
        raise DataError(
            f"{layout.format} dataset {layout.root}: label map {path.name} holds {', '.join(map(str, bad[:5]))}, "
            f"outside the class list: allowed are {what}" + ("" if table is not None else f" and {IGNORE} (ignored)")
        )
    if table is not None:
        raw = np.asarray(table, dtype=np.int64)[raw]
    return raw.astype(np.uint8)


def truth_of(layout: Layout, item: Item, labelled: bool = True, size: tuple[int, int] | None = None) -> Truth:
    """An image's original-size `Truth` (its label map read when scored; none for an image without
    one), reading the image's header only (or nothing, given its (height, width) `size`) and its
    ground truth's, checked."""
    size = size or image_size(item.image)
    if item.target is None or not labelled:
        return Truth(item.name, size)
    label_size = read_labels(layout, item.target).shape if item.target.suffix == ".mat" else image_size(item.target)
    check_same_size(layout, item.image, size, item.target, label_size, "label map")
    return Truth(item.name, size, dense=partial(read_labels, layout, item.target))


def load_item(layout: Layout, item: Item, labelled: bool = True) -> tuple[np.ndarray, Truth]:
    """One image (uint8 H x W x 3) and its original-size label map as a `Truth`, checked."""
    img = read_image(item.image, "RGB")
    truth = truth_of(layout, item, labelled, img.shape[:2])
    if truth.dense is not None:
        check_same_size(layout, item.image, img.shape, item.target, truth.array().shape, "label map")
    return img, truth


def fields_of(truth: Truth, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A segmentation truth's stored field at (height, width) `size`: "seg", uint8 class ids by
    nearest neighbour; none for an image without a label map."""
    if truth.dense is None:
        return {}
    return {"seg": resize_labels(torch.from_numpy(truth.array())[None, None], size)[0]}


def read_segmentation(
    layout: Layout, which: str, size: tuple[int, int], *, limit: int | None = None, progress=None
) -> Split:
    """The `which` split of `layout` at (height, width) `size`, in memory, with original-size truths
    (none for a split without labels, such as Cityscapes' test images)."""
    items = layout.items(which)[:limit] if limit else layout.items(which)
    load = partial(load_item, layout, labelled=which in layout.labelled)
    return read_split(items, size, load, fields_of, progress=progress)


__all__ = [
    "IGNORE", "SYNTHETIC_CLASSES", "fields_of", "load_item", "read_labels", "read_segmentation",
    "synthetic_segmentation", "truth_of",
]  # fmt: skip
