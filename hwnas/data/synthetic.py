"""Procedural saliency scenes: learnable salient regions with maps and sampled fixations.

Each scene is a smooth, desaturated background with a few low-contrast distractor disks and one to
three saturated, high-contrast target disks. A latent saliency distribution (Gaussians on the
targets, widths following their radii, plus a weak centre bias) stands in for where observers look:
fixations are drawn from it, and the ground-truth map is those fixations blurred with a Gaussian,
which is how SALICON, MIT1003 and CAT2000 build their maps. Like theirs, it is a noisy estimate of
the latent distribution. A network learns the latter by finding saturated colour blobs, so
validation CC rises within a few epochs on a CPU. Every image depends only on (seed, index).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from hwnas.data.split import Split

FIXATIONS_PER_IMAGE = 16
BLUR = 0.04  # Gaussian sigma of the map, as a fraction of the image's shorter side (~1 degree of view)


def smooth_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth, desaturated colour field (bilinear 4x4 grid) with a little pixel noise, (3, h, w)."""
    coarse = rng.uniform(0.3, 0.6, size=(3, 4, 4))
    grey = coarse.mean(0, keepdims=True)
    coarse = grey + 0.25 * (coarse - grey)  # desaturated
    ys, xs = np.linspace(0, 3, h), np.linspace(0, 3, w)
    y0, x0 = np.floor(ys).astype(int).clip(0, 2), np.floor(xs).astype(int).clip(0, 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    img = np.empty((3, h, w))
    for c in range(3):
        g = coarse[c]
        img[c] = (
            g[y0][:, x0] * (1 - fy) * (1 - fx)
            + g[y0 + 1][:, x0] * fy * (1 - fx)
            + g[y0][:, x0 + 1] * (1 - fy) * fx
            + g[y0 + 1][:, x0 + 1] * fy * fx
        )
    return img + rng.normal(0, 0.03, size=img.shape)


def render_scenes(n: int, size: tuple[int, int], seed: int, scene: Callable, name: str) -> Split:
    """`n` procedural scenes of (height, width) `size`: `scene(rng, h, w)` gives an image (3, h, w)
    in [0, 1] and its uint8 (h, w) target, stored as the field `name`; scene i draws from a generator
    seeded with (seed, i), so it depends on nothing else."""
    h, w = size
    images = np.empty((n, 3, h, w), dtype=np.uint8)
    targets = np.empty((n, 1, h, w), dtype=np.uint8)
    for i in range(n):
        img, target = scene(np.random.default_rng([seed, i]), h, w)
        images[i] = np.round(img * 255)
        targets[i, 0] = target
    return Split(torch.from_numpy(images), {name: torch.from_numpy(targets)})


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = smooth_background(rng, h, w)
    scale = min(h, w) / 64
    for _ in range(rng.integers(2, 5)):  # distractors: near the background colour
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 8) * scale
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[:, disk] = img[:, disk].mean(1, keepdims=True) + rng.uniform(-0.08, 0.08)
    sal = 0.05 * np.exp(-(((yy - h / 2) / (0.3 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2))
    for _ in range(rng.integers(1, 4)):  # targets: saturated colours
        cy, cx = rng.uniform(0.15 * h, 0.85 * h), rng.uniform(0.15 * w, 0.85 * w)
        r = rng.uniform(3, 9) * scale
        colour = np.zeros(3)
        colour[rng.integers(0, 3)] = 1.0
        colour[rng.integers(0, 3)] += rng.uniform(0.0, 0.6)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[:, disk] = np.clip(colour, 0, 1)[:, None]
        sal += rng.uniform(0.6, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.8 * r + 1) ** 2))
    picks = rng.choice(h * w, size=FIXATIONS_PER_IMAGE, p=(sal / sal.sum()).ravel())
    counts = np.bincount(picks, minlength=h * w).reshape(h, w).astype(np.float64)
    blurred = gaussian_filter(counts, sigma=BLUR * min(h, w), mode="constant")
    return np.clip(img, 0, 1), blurred / blurred.max(), counts > 0


def synthetic_saliency(n: int, *, size: tuple[int, int] = (64, 64), seed: int = 0) -> Split:
    """`n` scenes of (height, width) `size`, the same for the same seed."""
    h, w = size
    images = np.empty((n, 3, h, w), dtype=np.uint8)
    maps = np.empty((n, 1, h, w), dtype=np.uint8)
    fix = np.empty((n, 1, h, w), dtype=bool)
    for i in range(n):
        img, sal, f = _scene(np.random.default_rng([seed, i]), h, w)
        images[i] = np.round(img * 255)
        maps[i, 0] = np.round(sal * 255)
        fix[i, 0] = f
    return Split(torch.from_numpy(images), {"map": torch.from_numpy(maps), "fix": torch.from_numpy(fix)})
