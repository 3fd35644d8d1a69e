"""Saliency metrics as Bylinskii et al. define them ("What do different evaluation metrics tell us
about saliency models?", TPAMI 2019, Section 3 and the MIT/Tuebingen benchmark code), the salient
object detection (SOD) metrics FocusNet reports (`score_sod`, computed by PySODMetrics), plus top-1.

Each saliency metric takes one image's maps as 2-D numpy arrays: `sal` the predicted map (any
non-negative scale), `gt` the continuous fixation map, `fix` the binary fixation map.
`score_saliency` averages them over a set of images the way the benchmarks report them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from hwnas.errors import HwnasError

EPS = np.finfo(np.float64).eps  # 2.2204e-16, as the MIT benchmark code uses

SALIENCY_METRICS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig")
SOD_METRICS = ("mae", "wfm", "sm", "em", "maxf")
HIGHER_IS_BETTER = {
    "cc": True,
    "kld": False,
    "nss": True,
    "sim": True,
    "auc_judd": True,
    "sauc": True,
    "ig": True,
    "mae": False,
    "wfm": True,
    "sm": True,
    "em": True,
    "maxf": True,
}


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _to_distribution(x: np.ndarray) -> np.ndarray:
    x = _f64(x)
    return x / (x.sum() + EPS)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = _f64(x)
    return (x - x.mean()) / (x.std(ddof=1) + EPS)


def cc(sal: np.ndarray, gt: np.ndarray) -> float:
    """Pearson's linear correlation coefficient between two maps."""
    return float(np.corrcoef(_f64(sal).ravel(), _f64(gt).ravel())[0, 1])


def kld(sal: np.ndarray, gt: np.ndarray) -> float:
    """KL divergence of the prediction from the ground-truth distribution: sum G log(eps + G/(P + eps))."""
    p, g = _to_distribution(sal), _to_distribution(gt)
    return float(np.sum(g * np.log(EPS + g / (p + EPS))))


def nss(sal: np.ndarray, fix: np.ndarray) -> float:
    """Normalized scanpath saliency: the mean of the standardised map at the fixations."""
    mask = np.asarray(fix) > 0
    return float(_standardise(sal)[mask].mean())


def sim(sal: np.ndarray, gt: np.ndarray) -> float:
    """Similarity (histogram intersection) of the two maps, each min-max scaled then summed to 1."""

    def scale(x: np.ndarray) -> np.ndarray:
        x = _f64(x)
        span = x.max() - x.min()
        return _to_distribution((x - x.min()) / span if span > 0 else np.zeros_like(x))

    return float(np.minimum(scale(sal), scale(gt)).sum())


def auc_judd(sal: np.ndarray, fix: np.ndarray) -> float:
    """AUC-Judd: thresholds at the saliency of each fixation; true positives are fixations above the
    threshold, false positives the other pixels above it (MIT benchmark, without its random jitter)."""
    s = _f64(sal).ravel()
    s = (s - s.min()) / (s.max() - s.min() + EPS)
    mask = np.asarray(fix).ravel() > 0
    n_fix, n_pix = int(mask.sum()), s.size
    thresholds = np.sort(s[mask])[::-1]
    sorted_all = np.sort(s)
    above = n_pix - np.searchsorted(sorted_all, thresholds, side="left")
    tp = np.concatenate([[0.0], np.arange(1, n_fix + 1) / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - np.arange(1, n_fix + 1)) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp))


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve of positives vs negatives (Mann-Whitney U; ties count one half)."""
    pos, neg = _f64(positives).ravel(), _f64(negatives).ravel()
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def sauc(sal: np.ndarray, fix: np.ndarray, other_fix: np.ndarray) -> float:
    """Shuffled AUC: this image's fixations are positives, the fixation locations of other images
    (that are not fixated here) the negatives, which discounts centre bias. Computed exactly over all
    negatives rather than by the MIT code's 100 random subsets."""
    s = _f64(sal)
    pos_mask = np.asarray(fix) > 0
    neg_mask = (np.asarray(other_fix) > 0) & ~pos_mask
    return auc(s[pos_mask], s[neg_mask])


def center_bias(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centred isotropic Gaussian (sigma as a fraction of the larger side): IG's default baseline."""
    ys = (np.arange(height) - (height - 1) / 2) / max(height, width)
    xs = (np.arange(width) - (width - 1) / 2) / max(height, width)
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))


def information_gain(sal: np.ndarray, fix: np.ndarray, baseline: np.ndarray) -> float:
    """Information gain over a baseline, in bits per fixation: mean over fixations of
    log2(eps + P) - log2(eps + B), with P and B normalised to sum 1 (Kuemmerer et al.)."""
    mask = np.asarray(fix) > 0
    p, b = _to_distribution(sal), _to_distribution(baseline)
    return float(np.mean(np.log2(EPS + p[mask]) - np.log2(EPS + b[mask])))


def score_saliency(
    sal: np.ndarray, gt: np.ndarray, fix: np.ndarray, *, baseline: np.ndarray | None = None
) -> dict[str, float]:
    """Mean of every metric over a set of images shaped (N, H, W) (or (N, 1, H, W)).

    sAUC's negatives for image i are the fixations of all the other images of the set; IG's
    baseline defaults to `center_bias`. Images without fixations are skipped by the fixation-based
    metrics.
    """
    sal, gt, fix = (np.asarray(a).reshape(len(a), *np.asarray(a).shape[-2:]) for a in (sal, gt, fix))
    base = center_bias(*sal.shape[-2:]) if baseline is None else baseline
    all_fix = (fix > 0).sum(0)
    rows: dict[str, list[float]] = {m: [] for m in SALIENCY_METRICS}
    for s, g, f in zip(sal, gt, fix, strict=True):
        rows["cc"].append(cc(s, g))
        rows["kld"].append(kld(s, g))
        rows["sim"].append(sim(s, g))
        if (f > 0).any():
            rows["nss"].append(nss(s, f))
            rows["auc_judd"].append(auc_judd(s, f))
            rows["ig"].append(information_gain(s, f, base))
            other = all_fix - (f > 0)
            if ((other > 0) & ~(f > 0)).any():
                rows["sauc"].append(sauc(s, f, other))
    return {m: float(np.mean(v)) if v else float("nan") for m, v in rows.items()}


def score_sod(pred: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The SOD metrics FocusNet (Zhou et al., 2024) reports, each the mean over a set of images.

    pred: float (N, 1, H, W) (or (N, H, W)) in [0, 1]; mask: binary (N, 1, H, W), bool or 0/1.
    The evaluator is PySODMetrics (`py_sod_metrics`, checked against Fan et al.'s MATLAB toolbox):
    each image goes in as `step(pred=uint8 0..255, gt=uint8 0/255)`, so, as in that toolbox, the
    prediction is min-max stretched per image (unless constant) and binarised at the 256 thresholds
    0..255 for the curves.

    - "mae": mean absolute error (Perazzi et al., 2012);
    - "wfm": weighted F-measure, beta^2 = 1 (Margolin et al., 2014); 0 for an image without foreground;
    - "sm": S-measure, alpha = 0.5 (Fan et al., 2017); 1 - mean(pred) on an all-background mask,
      mean(pred) on an all-foreground one;
    - "em": mean E-measure (Fan et al., 2018), the mean over the 256 thresholds of the E-measure
      curve ("meanEm" in PySODMetrics' tables, not the adaptive "adpEm" or "maxEm");
    - "maxf": max F-measure, beta^2 = 0.3: the maximum over thresholds of the F-measure curve
      averaged over images ("maxFm").
    """
    try:
        import py_sod_metrics
    except ImportError:
        raise HwnasError("the SOD metrics need PySODMetrics: pip install 'hwnas[sod]'") from None

    pred, mask = np.asarray(pred), np.asarray(mask)
    if pred.shape != mask.shape:
        raise ValueError(f"prediction {pred.shape} and mask {mask.shape} differ in shape")
    if pred.size == 0:
        return dict.fromkeys(SOD_METRICS, float("nan"))
    pred8 = np.round(np.clip(pred.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    gt8 = np.where(mask > 0.5, 255, 0).astype(np.uint8)
    pred8, gt8 = pred8.reshape(-1, *pred8.shape[-2:]), gt8.reshape(-1, *gt8.shape[-2:])
    mae, wfm, sm, em = (
        py_sod_metrics.MAE(),
        py_sod_metrics.WeightedFmeasure(),
        py_sod_metrics.Smeasure(),
        py_sod_metrics.Emeasure(),
    )
    fm = py_sod_metrics.FmeasureV2({"fm": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=False)})
    for p, g in zip(pred8, gt8, strict=True):
        for metric in (mae, wfm, sm, em, fm):
            metric.step(pred=p, gt=g)
    return {
        "mae": float(mae.get_results()["mae"]),
        "wfm": float(wfm.get_results()["wfm"]),
        "sm": float(sm.get_results()["sm"]),
        "em": float(em.get_results()["em"]["curve"].mean()),
        "maxf": float(fm.get_results()["fm"]["dynamic"].max()),
    }


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest-scoring class is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
