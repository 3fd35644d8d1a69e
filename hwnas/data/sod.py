"""Salient object detection (SOD) data: procedural scenes, and reading a dataset folder's split (DUTS,
ECSSD, HKU-IS, PASCAL-S, DUT-OMRON: `hwnas.data.layout`).

Both give a `Split` whose images are uint8 (N, 3, H, W) and whose field "mask" is uint8 (N, 1, H, W)
with values 0 and 255 (the salient objects), the form FocusNet (Zhou et al., 2024) trains on. A
folder's images may differ in size; each is resized bilinearly to the requested resolution, its mask
with nearest neighbours so that it stays binary, and its original-size mask is kept as a `Truth`
for scoring as the SOD evaluators do. A mask must have its image's size. DUTS's masks are binary
except for a thin anti-aliased rim on some objects (the SOD evaluators threshold the ground truth
for that reason), so up to `MAX_GREY_FRACTION` of a mask's pixels may lie strictly between 0 and
255; they are thresholded at 128. A mask with more is not a mask and is refused, except in a
format whose masks are graded (PASCAL-S), where 128 is the threshold too.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.data.images import check_same_size, image_size, read_image
from hwnas.data.layout import Item, Layout
from hwnas.data.split import DataError, Split, read_split
from hwnas.data.synthetic import render_scenes, smooth_background
from hwnas.data.truth import Truth

MAX_GREY_FRACTION = 0.1  # of a 0..255 mask's pixels that may be neither 0 nor 255 (anti-aliased edges)


# ---- procedural scenes -------------------------------------------------------------------------
def random_shape(rng: np.random.Generator, h: int, w: int, cy: float, cx: float, lo: float, hi: float) -> np.ndarray:
    """A bool (h, w) disk, rotated ellipse or rotated rectangle centred at (cy, cx), semi-axes in
    [lo, hi] pixels (at least 1), never empty."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    kind = rng.integers(0, 3)
    a = max(rng.uniform(lo, hi), 1.0)
    b = a if kind == 0 else max(a * rng.uniform(0.5, 1.0), 1.0)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
    shape = (np.abs(u) <= 1) & (np.abs(v) <= 1) if kind == 2 else u**2 + v**2 <= 1
    if not shape.any():  # only at toy resolutions: keep the pixel under the centre
        shape[min(int(cy), h - 1), min(int(cx), w - 1)] = True
    return shape


def _saturated(rng: np.random.Generator) -> np.ndarray:
    colour = np.zeros(3)
    colour[rng.integers(0, 3)] = 1.0
    colour[rng.integers(0, 3)] += rng.uniform(0.0, 0.6)
    return np.clip(colour, 0, 1)


def _sod_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Objects are told from clutter of the same colours by their size (and from the background by
    their colour), so a model needs context beyond a pixel's colour: what FOCUS and AFE are for."""
    img = smooth_background(rng, h, w)
    scale = min(h, w) / 64
    for _ in range(rng.integers(2, 5)):  # distractors: shapes near the background colour
        region = random_shape(rng, h, w, rng.uniform(0, h), rng.uniform(0, w), 3 * scale, 9 * scale)
        img[:, region] = img[:, region].mean(1, keepdims=True) + rng.uniform(-0.08, 0.08)
    for _ in range(rng.integers(3, 7)):  # clutter: small shapes of the objects' saturated colours
        region = random_shape(rng, h, w, rng.uniform(0, h), rng.uniform(0, w), 1.0 * scale, 2.5 * scale)
        img[:, region] = _saturated(rng)[:, None]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 3)):  # salient objects: large, saturated, high-contrast
        cy, cx = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
        region = random_shape(rng, h, w, cy, cx, 5 * scale, 14 * scale)
        img[:, region] = _saturated(rng)[:, None] + rng.normal(0, 0.02, size=(3, int(region.sum())))
        mask |= region
    return np.clip(img, 0, 1), np.where(mask, 255, 0).astype(np.uint8)


def synthetic_sod(n: int, *, size: tuple[int, int] = (64, 64), seed: int = 0) -> Split:
    """`n` scenes of (height, width) `size`: a smooth desaturated background, a few low-contrast
    distractor shapes, small saturated clutter, and one or two large saturated objects (disks,
    ellipses, rectangles) that the mask marks. Image i depends only on (seed, i)."""
    return render_scenes(n, size, seed, _sod_scene, "mask")


# ---- dataset folders ---------------------------------------------------------------------------
def binary_mask(layout: Layout, path: Path, mask: np.ndarray) -> np.ndarray:
    """A grey mask as bool: 0/1 masks as they are, 0..255 ones thresholded at 128 when at most
    `MAX_GREY_FRACTION` of their pixels are neither 0 nor 255 (or always, for graded masks such as
    PASCAL-S's); anything else is a `DataError`."""
    if mask.max(initial=0) <= 1:
        return mask > 0
    grey = float(np.mean((mask > 0) & (mask < 255)))
    if grey > MAX_GREY_FRACTION and not layout.graded_masks:
        values = np.unique(mask)
        raise DataError(
            f"{layout.format} dataset {layout.root}: mask {path.name} is not binary: it has {values.size} distinct "
            f"values ({values[0]}..{values[-1]}), {grey:.0%} of its pixels neither 0 nor 255; SOD masks must be "
            f"0/255 (or 0/1), with at most {MAX_GREY_FRACTION:.0%} grey edge pixels"
        )
    return mask >= 128


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A bool (H, W) mask as uint8 0/255 (1, h, w), resized with nearest neighbours."""
    m = torch.from_numpy(mask)[None, None].float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="nearest-exact")
    return (m[0] * 255).to(torch.uint8)


def _read_mask(layout: Layout, path: Path) -> np.ndarray:
    return binary_mask(layout, path, read_image(path, "L"))


def truth_of(layout: Layout, item: Item, labelled: bool = True, size: tuple[int, int] | None = None) -> Truth:
    """An image's original-size `Truth` (its mask read when scored), reading the image's header
    only (or nothing, given its (height, width) `size`) and its mask's, checked."""
    size = size or image_size(item.image)
    check_same_size(layout, item.image, size, item.target, image_size(item.target), "mask")
    return Truth(item.name, size, dense=partial(_read_mask, layout, item.target))


def load_item(layout: Layout, item: Item, labelled: bool = True) -> tuple[np.ndarray, Truth]:
    """One image (uint8 H x W x 3) and its original-size mask as a `Truth`, checked."""
    img = read_image(item.image, "RGB")
    truth = truth_of(layout, item, labelled, img.shape[:2])
    check_same_size(layout, item.image, img.shape, item.target, truth.array().shape, "mask")
    return img, truth


def fields_of(truth: Truth, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A SOD truth's stored field at (height, width) `size`: "mask", uint8 0/255."""
    return {"mask": _resize_mask(truth.array(), size)}


def read_sod(layout: Layout, which: str, size: tuple[int, int], *, limit: int | None = None, progress=None) -> Split:
    """The `which` split of `layout` at (height, width) `size`, in memory, with original-size truths."""
    items = layout.items(which)[:limit] if limit else layout.items(which)
    return read_split(items, size, partial(load_item, layout), fields_of, progress=progress)
