"""Salient object detection (SOD) data: procedural scenes and the DUTS folder layout.

Both give a `Split` whose images are uint8 (N, 3, H, W) and whose field "mask" is uint8 (N, 1, H, W)
with values 0 and 255 (the salient objects), the form FocusNet (Zhou et al., 2024) trains on.

DUTS (Wang et al., 2017), as distributed:

    ROOT/DUTS-TR/DUTS-TR-Image/NAME.jpg    training images (RGB)
    ROOT/DUTS-TR/DUTS-TR-Mask/NAME.png     their masks (grey, 0/255 or 0/1)
    ROOT/DUTS-TE/DUTS-TE-Image/NAME.jpg    test images
    ROOT/DUTS-TE/DUTS-TE-Mask/NAME.png     test masks

Train and validation are a fixed, seeded split of DUTS-TR; DUTS-TE is the test split. Images may
differ in size from one another; each is resized bilinearly to the requested resolution, its mask
with nearest neighbours so that it stays binary. A mask must have its image's size. DUTS's masks
are binary except for a thin anti-aliased rim on some objects (the SOD evaluators threshold the
ground truth for that reason), so up to `MAX_GREY_FRACTION` of a mask's pixels may lie strictly
between 0 and 255; they are thresholded at 128. A mask with more is not a mask and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.data.saliency import IMAGE_SUFFIXES, _examples, _read
from hwnas.data.split import DataError, Split, resize_uint8
from hwnas.data.synthetic import smooth_background

MAX_GREY_FRACTION = 0.1  # of a 0..255 mask's pixels that may be neither 0 nor 255 (anti-aliased edges)
LAYOUT = (
    "expected DUTS-TR/DUTS-TR-Image/NAME.jpg with DUTS-TR/DUTS-TR-Mask/NAME.png "
    "(and DUTS-TE/DUTS-TE-Image, DUTS-TE/DUTS-TE-Mask for the test split)"
)


# ---- procedural scenes -------------------------------------------------------------------------
def _shape(rng: np.random.Generator, h: int, w: int, cy: float, cx: float, lo: float, hi: float) -> np.ndarray:
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
        region = _shape(rng, h, w, rng.uniform(0, h), rng.uniform(0, w), 3 * scale, 9 * scale)
        img[:, region] = img[:, region].mean(1, keepdims=True) + rng.uniform(-0.08, 0.08)
    for _ in range(rng.integers(3, 7)):  # clutter: small shapes of the objects' saturated colours
        region = _shape(rng, h, w, rng.uniform(0, h), rng.uniform(0, w), 1.0 * scale, 2.5 * scale)
        img[:, region] = _saturated(rng)[:, None]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 3)):  # salient objects: large, saturated, high-contrast
        cy, cx = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
        region = _shape(rng, h, w, cy, cx, 5 * scale, 14 * scale)
        img[:, region] = _saturated(rng)[:, None] + rng.normal(0, 0.02, size=(3, int(region.sum())))
        mask |= region
    return np.clip(img, 0, 1), mask


def synthetic_sod(n: int, *, size: tuple[int, int] = (64, 64), seed: int = 0) -> Split:
    """`n` scenes of (height, width) `size`: a smooth desaturated background, a few low-contrast
    distractor shapes, small saturated clutter, and one or two large saturated objects (disks,
    ellipses, rectangles) that the mask marks. Image i depends only on (seed, i)."""
    h, w = size
    images = np.empty((n, 3, h, w), dtype=np.uint8)
    masks = np.empty((n, 1, h, w), dtype=np.uint8)
    for i in range(n):
        img, mask = _sod_scene(np.random.default_rng([seed, i]), h, w)
        images[i] = np.round(img * 255)
        masks[i, 0] = np.where(mask, 255, 0)
    return Split(torch.from_numpy(images), {"mask": torch.from_numpy(masks)})


# ---- DUTS folders ------------------------------------------------------------------------------
def _pairs(root: Path, part: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ROOT/`part` ("DUTS-TR" or "DUTS-TE"), sorted by image name."""
    folders = {kind: root / part / f"{part}-{kind}" for kind in ("Image", "Mask")}
    for folder in folders.values():
        if not folder.is_dir():
            raise DataError(f"DUTS dataset {root}: missing folder {part}/{folder.name}; {LAYOUT}")
    images = sorted(p for p in folders["Image"].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"DUTS dataset {root}: no .jpg/.png images in {part}/{part}-Image")
    pairs = [(img, folders["Mask"] / f"{img.stem}.png") for img in images]
    missing = [img.name for img, mask in pairs if not mask.is_file()]
    if missing:
        raise DataError(
            f"DUTS dataset {root}: {len(missing)} of {len(images)} images in {part}/{part}-Image have no mask "
            f"({part}/{part}-Mask/NAME.png): {_examples(missing)}"
        )
    return pairs


def _binary(root: Path, path: Path, mask: np.ndarray) -> np.ndarray:
    """A grey mask as bool: 0/1 masks as they are, 0..255 ones thresholded at 128 when at most
    `MAX_GREY_FRACTION` of their pixels are neither 0 nor 255; anything else is a `DataError`."""
    if mask.max(initial=0) <= 1:
        return mask > 0
    grey = float(np.mean((mask > 0) & (mask < 255)))
    if grey > MAX_GREY_FRACTION:
        values = np.unique(mask)
        raise DataError(
            f"DUTS dataset {root}: mask {path.name} is not binary: it has {values.size} distinct values "
            f"({values[0]}..{values[-1]}), {grey:.0%} of its pixels neither 0 nor 255; SOD masks must be 0/255 "
            f"(or 0/1), with at most {MAX_GREY_FRACTION:.0%} grey edge pixels"
        )
    return mask >= 128


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A bool (H, W) mask as uint8 0/255 (1, h, w), resized with nearest neighbours."""
    m = torch.from_numpy(mask)[None, None].float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="nearest-exact")
    return (m[0] * 255).to(torch.uint8)


def _read_pairs(root: Path, pairs: list[tuple[Path, Path]], size: tuple[int, int]) -> Split:
    h, w = size
    images = torch.empty((len(pairs), 3, h, w), dtype=torch.uint8)
    masks = torch.empty((len(pairs), 1, h, w), dtype=torch.uint8)
    for i, (img_path, mask_path) in enumerate(pairs):
        img, mask = _read(img_path, "RGB"), _read(mask_path, "L")
        if mask.shape[:2] != img.shape[:2]:
            raise DataError(
                f"DUTS dataset {root}: {img_path.name} is {img.shape[1]}x{img.shape[0]} but its mask "
                f"{mask_path.name} is {mask.shape[1]}x{mask.shape[0]}; a mask must have its image's size"
            )
        images[i] = resize_uint8(torch.from_numpy(img).permute(2, 0, 1)[None], size)[0]
        masks[i] = _resize_mask(_binary(root, mask_path, mask), size)
    return Split(images, {"mask": masks})


def read_duts(
    root: Path, size: tuple[int, int], *, seed: int = 0, val_fraction: float = 0.1
) -> tuple[Split, Split, Callable[[], Split]]:
    """Train, validation and (read on call) test splits of a DUTS folder at (height, width) `size`.

    Validation is `val_fraction` of DUTS-TR (at least one image), drawn with `seed`; train is the
    rest; test is DUTS-TE. Every problem with the folder is one `DataError` naming the file.
    """
    root = Path(root)
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must lie strictly between 0 and 1, not {val_fraction}")
    pairs = _pairs(root, "DUTS-TR")
    n = len(pairs)
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise DataError(f"DUTS dataset {root}: DUTS-TR has {n} image(s); a train and a validation split need 2")
    order = np.random.default_rng(seed).permutation(n)
    val_rows, train_rows = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    train = _read_pairs(root, [pairs[i] for i in train_rows], size)
    val = _read_pairs(root, [pairs[i] for i in val_rows], size)

    def test() -> Split:
        if not (root / "DUTS-TE").is_dir():
            raise DataError(f"DUTS dataset {root} has no test split (DUTS-TE/DUTS-TE-Image, DUTS-TE/DUTS-TE-Mask)")
        return _read_pairs(root, _pairs(root, "DUTS-TE"), size)

    return train, val, test
