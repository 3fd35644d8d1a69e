"""Saliency metrics as the benchmarks compute them.

Each metric takes one image's maps as 2-D numpy arrays at the size of its ground truth
(the image's original size when scored as the benchmarks score): `sal` the prediction (any
non-negative scale), `gt` the continuous fixation map, `fix` the binary fixation map (the fixated
pixels). The references, file by file:

- MIT saliency benchmark code (Bylinskii et al., "What do different evaluation metrics tell us about
  saliency models?", TPAMI 2019; github.com/cvzoya/saliency, `code_forMetrics/`): `CC.m`, `KLdiv.m`
  (eps = 2.2204e-16), `NSS.m`, `similarity.m`, `AUC_Judd.m` (without its 1e-7 random jitter),
  `AUC_Borji.m` (100 splits, step 0.1), `AUC_shuffled.m` (the MIT sAUC: negatives drawn from the
  fixations of 10 random other images) and `InfoGain.m` (both maps min-max normalised, then made
  distributions);
- pysaliency (Kuemmerer et al.; the Tuebingen/MIT benchmark's evaluator): the default sAUC, whose
  negatives are the fixations of *all* other images of the set, each counted as often as it occurs,
  scaled to this image's size (`FullShuffledNonfixationProvider`, `general_roc`). `sauc` computes
  that AUC exactly from a count map.

`score_saliency` averages the per-image values over a set (the MIT benchmark's per-image mean).
`tests/data/saliency_metrics/` holds values pysaliency 0.2.22 computed on seeded maps
(`tools/saliency_metric_fixtures.py`); the tests compare against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.data.metrics.names import SALIENCY_METRICS
from hwnas.errors import HwnasError

EPS = 2.2204e-16  # MATLAB's eps, as the MIT benchmark code uses
SHUFFLES = ("all", "mit")  # sAUC negatives: all other images' fixations (pysaliency) or MIT's 10 images
MIT_SPLITS, MIT_STEP, MIT_OTHER_IMAGES = 100, 0.1, 10


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _sum_to_one(x: np.ndarray) -> np.ndarray:
    x = _f64(x)
    total = x.sum()
    return x / total if total else x


def _min_max(x: np.ndarray) -> np.ndarray:
    x = _f64(x)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def cc(sal: np.ndarray, gt: np.ndarray) -> float:
    """Pearson's linear correlation coefficient between two maps (`CC.m`); 0 for a constant
    prediction, as pysaliency's `CC` has it (`CC.m` gives NaN)."""
    s = _f64(sal).ravel()
    if s.min() == s.max():
        return 0.0
    return float(np.corrcoef(s, _f64(gt).ravel())[0, 1])


def kld(sal: np.ndarray, gt: np.ndarray) -> float:
    """KL divergence of the prediction from the ground truth, sum G log(eps + G / (P + eps)), each map
    first divided by its sum (`KLdiv.m`; pysaliency's `MIT_KLDiv`)."""
    p, g = _sum_to_one(sal), _sum_to_one(gt)
    return float(np.sum(g * np.log(EPS + g / (p + EPS))))


def nss(sal: np.ndarray, fix: np.ndarray) -> float:
    """Normalized scanpath saliency: the mean of the standardised map (sample std, as MATLAB's `std`)
    at the fixated pixels (`NSS.m`)."""
    s = _f64(sal)
    return float(((s - s.mean()) / (s.std(ddof=1) + EPS))[np.asarray(fix) > 0].mean())


def sim(sal: np.ndarray, gt: np.ndarray) -> float:
    """Similarity (histogram intersection) of the two maps, each min-max scaled then summed to 1
    (`similarity.m`)."""
    return float(np.minimum(_sum_to_one(_min_max(sal)), _sum_to_one(_min_max(gt))).sum())


def auc_judd(sal: np.ndarray, fix: np.ndarray) -> float:
    """AUC-Judd: thresholds at the saliency of each fixated pixel; true positives are fixations above
    the threshold, false positives the other pixels above it (`AUC_Judd.m`, without its jitter)."""
    s = _min_max(sal).ravel()
    mask = np.asarray(fix).ravel() > 0
    n_fix, n_pix = int(mask.sum()), s.size
    thresholds = np.sort(s[mask])[::-1]
    above = n_pix - np.searchsorted(np.sort(s), thresholds, side="left")
    tp = np.concatenate([[0.0], np.arange(1, n_fix + 1) / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - np.arange(1, n_fix + 1)) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp))


def _split_auc(positives: np.ndarray, negatives: np.ndarray, step: float) -> np.ndarray:
    """The MIT code's AUC of positives against each column of `negatives`, thresholds 0, step, ...,
    up to the largest value, highest first (`AUC_Borji.m`, `AUC_shuffled.m`)."""
    areas = np.empty(negatives.shape[1])
    for s in range(negatives.shape[1]):
        neg = negatives[:, s]
        top = max(float(positives.max()), float(neg.max()))
        thresholds = np.arange(0.0, top + step * 1e-9, step)[::-1]
        tp = np.concatenate([[0.0], (positives[None, :] >= thresholds[:, None]).mean(1), [1.0]])
        fp = np.concatenate([[0.0], (neg[None, :] >= thresholds[:, None]).mean(1), [1.0]])
        areas[s] = np.trapezoid(tp, fp)
    return areas


def auc_borji(sal: np.ndarray, fix: np.ndarray, rng: np.random.Generator, splits: int = MIT_SPLITS) -> float:
    """AUC-Borji: fixated pixels against as many pixels drawn uniformly (with replacement), the mean
    over `splits` draws (`AUC_Borji.m`: 100 splits, thresholds every 0.1)."""
    s = _min_max(sal).ravel()
    positives = s[np.asarray(fix).ravel() > 0]
    draws = rng.integers(0, s.size, size=(positives.size, splits))
    return float(_split_auc(positives, s[draws], MIT_STEP).mean())


def auc(positives: np.ndarray, negatives: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve of positives against negatives, each negative counted `weights` times:
    P(positive > negative) + P(tie) / 2, the area of the ROC curve over every threshold (pysaliency's
    `general_roc`)."""
    pos, neg = _f64(positives).ravel(), _f64(negatives).ravel()
    w = np.ones_like(neg) if weights is None else _f64(weights).ravel()
    order = np.argsort(neg, kind="stable")
    neg, cum = neg[order], np.concatenate([[0.0], np.cumsum(w[order])])
    below = cum[np.searchsorted(neg, pos, side="left")]
    not_above = cum[np.searchsorted(neg, pos, side="right")]
    return float(np.mean(below + (not_above - below) / 2) / cum[-1])


def sauc(sal: np.ndarray, points: np.ndarray, negatives: np.ndarray) -> float:
    """Shuffled AUC as pysaliency computes it: this image's fixations (rows (y, x), each as often as it
    occurs) against the fixations of all other images of the set, given as `negatives`, a count map of
    this image's size (how many other fixations fall on each pixel). Exact, no sampling."""
    s = _f64(sal)
    counts = np.asarray(negatives).ravel()
    used = counts > 0
    return auc(s[points[:, 0], points[:, 1]], s.ravel()[used], counts[used])


def sauc_mit(sal: np.ndarray, fix: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> float:
    """The MIT benchmark's shuffled AUC (`AUC_shuffled.m`): fixated pixels against as many (at most)
    pixels drawn without replacement from `other`, the binary fixation map of other images, the mean
    over 100 draws with thresholds every 0.1."""
    s = _min_max(sal).ravel()
    positives = s[np.asarray(fix).ravel() > 0]
    candidates = np.flatnonzero(np.asarray(other).ravel() > 0)
    n = min(positives.size, candidates.size)
    draws = np.stack([rng.permutation(candidates)[:n] for _ in range(MIT_SPLITS)], axis=1)
    return float(_split_auc(positives, s[draws], MIT_STEP).mean())


def information_gain(sal: np.ndarray, fix: np.ndarray, baseline: np.ndarray) -> float:
    """Information gain over a baseline, in bits per fixated pixel: both maps min-max normalised and
    summed to 1, then the mean of log2(eps + P) - log2(eps + B) at the fixations (`InfoGain.m`)."""
    mask = np.asarray(fix) > 0
    p, b = _sum_to_one(_min_max(sal)), _sum_to_one(_min_max(baseline))
    return float(np.mean(np.log2(EPS + p[mask]) - np.log2(EPS + b[mask])))


def fixation_map(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The binary (height, width) map of fixation rows (y, x)."""
    out = np.zeros(size, dtype=bool)
    out[points[:, 0], points[:, 1]] = True
    return out


def scaled_points(points: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """Fixation rows (y, x) of a `source`-sized image moved to a `target`-sized one: floor(y * H / h),
    as pysaliency scales other images' fixations."""
    if tuple(source) == tuple(target):
        return points
    scale = np.array(target, dtype=np.float64) / np.array(source, dtype=np.float64)
    return np.minimum((points * scale).astype(np.int64), np.array(target) - 1)


@dataclass(frozen=True)
class CenterBias:
    """A dataset's centre bias: the density of its training fixations over the unit square (each
    image's fixations at (y / H, x / W)), a `GRID` x `GRID` histogram smoothed by a Gaussian of
    `SIGMA` grid cells. IG's baseline, at any image size by bilinear resizing."""

    density: np.ndarray
    GRID = 64
    SIGMA = 2.0

    @classmethod
    def from_points(cls, points: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> CenterBias:
        from scipy.ndimage import gaussian_filter

        grid = np.zeros((cls.GRID, cls.GRID))
        for p, size in zip(points, sizes, strict=True):
            cells = scaled_points(p, size, (cls.GRID, cls.GRID))
            np.add.at(grid, (cells[:, 0], cells[:, 1]), 1.0)
        if not grid.any():
            raise HwnasError("a centre bias needs fixations; the training split has none")
        return cls(gaussian_filter(grid, cls.SIGMA, mode="nearest"))

    def at(self, size: tuple[int, int]) -> np.ndarray:
        """The density at (height, width), bilinear (pixel centres aligned), summing to 1."""
        from scipy.ndimage import map_coordinates

        h, w = size
        ys = (np.arange(h) + 0.5) * self.GRID / h - 0.5
        xs = (np.arange(w) + 0.5) * self.GRID / w - 0.5
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return _sum_to_one(np.maximum(map_coordinates(self.density, [yy, xx], order=1, mode="nearest"), 0))


def score_saliency(
    sal: Iterable[np.ndarray],
    gt: Iterable[np.ndarray],
    points: Sequence[np.ndarray],
    *,
    sizes: Sequence[tuple[int, int]] | None = None,
    baseline: CenterBias | None = None,
    shuffle: str = "all",
    seed: int = 0,
) -> dict[str, float]:
    """Every saliency metric, each the mean over the images of a set.

    Image i: `sal[i]` the prediction and `gt[i]` the continuous map, both of its ground truth's size
    `sizes[i]` (taken from `sal` when not given; pass `sizes` to stream `sal` and `gt` one image at a
    time), `points[i]` its fixations as integer rows (y, x), repeated as often as they occur. NSS,
    AUC-Judd, AUC-Borji, IG and MIT's sAUC use the fixated pixels (the binary map); pysaliency's sAUC
    counts every fixation. sAUC's negatives come from the other images of the set (`shuffle`: "all"
    their fixations, counted, or "mit": the union of 10 random ones'). IG needs `baseline` (the
    training split's `CenterBias`); without one it is NaN. The random draws of AUC-Borji and MIT's
    sAUC come from `seed`. Images without fixations count only for CC, KLD and SIM.
    """
    if shuffle not in SHUFFLES:
        raise HwnasError(f"sAUC shuffle '{shuffle}' is not known; allowed: {', '.join(SHUFFLES)}")
    if sizes is None:
        sal = list(sal)
        sizes = [tuple(np.shape(s)) for s in sal]
    sizes = [tuple(int(v) for v in size) for size in sizes]
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {m: [] for m in SALIENCY_METRICS}
    counts: dict[tuple[int, int], np.ndarray] = {}  # all fixations, per target size, for "all"
    for i, (s, g) in enumerate(zip(sal, gt, strict=True)):
        p, size = points[i], sizes[i]
        if np.shape(s) != size or np.shape(g) != size:
            raise ValueError(f"image {i}: prediction {np.shape(s)} and map {np.shape(g)} must both be {size}")
        rows["cc"].append(cc(s, g))
        rows["kld"].append(kld(s, g))
        rows["sim"].append(sim(s, g))
        if len(p) == 0:
            continue
        fix = fixation_map(p, size)
        rows["nss"].append(nss(s, fix))
        rows["auc_judd"].append(auc_judd(s, fix))
        rows["auc_borji"].append(auc_borji(s, fix, rng))
        rows["ig"].append(information_gain(s, fix, baseline.at(size)) if baseline else float("nan"))
        if shuffle == "all":
            if size not in counts:
                counts[size] = _count_map(points, sizes, size)
            others = counts[size] - np.bincount(np.ravel_multi_index(p.T, size), minlength=size[0] * size[1])
            if others.any():
                rows["sauc"].append(sauc(s, p, others.reshape(size)))
        else:
            chosen = rng.permutation([j for j in range(len(points)) if j != i and len(points[j])])[:MIT_OTHER_IMAGES]
            other = np.zeros(size, dtype=bool)
            for j in chosen:
                other |= fixation_map(scaled_points(points[j], sizes[j], size), size)
            if other.any():
                rows["sauc"].append(sauc_mit(s, fix, other, rng))
    return {m: float(np.mean(v)) if v else float("nan") for m, v in rows.items()}


def _count_map(points: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]], target: tuple[int, int]) -> np.ndarray:
    """How many fixations of all the images, each scaled to `target`, fall on each of its pixels (flat)."""
    total = np.zeros(target[0] * target[1], dtype=np.int64)  # flat; the caller subtracts its own
    for p, size in zip(points, sizes, strict=True):
        if len(p):
            total += np.bincount(np.ravel_multi_index(scaled_points(p, size, target).T, target), minlength=total.size)
    return total
