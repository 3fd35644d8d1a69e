"""The salient object detection (SOD) metrics FocusNet reports, computed by PySODMetrics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hwnas.data.metrics.names import SOD_METRICS
from hwnas.errors import HwnasError


def score_sod(pred: Iterable[np.ndarray], mask: Iterable[np.ndarray]) -> dict[str, float]:
    """The SOD metrics FocusNet (Zhou et al., 2024) reports, each the mean over a set of images.

    pred: one float map in [0, 1] per image; mask: the binary masks (bool or 0/1), each of its
    prediction's size (a stacked (N, [1,] H, W) array works too; images may differ in size; both
    may be iterators, read one image at a time).
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

    mae, wfm, sm, em = (
        py_sod_metrics.MAE(),
        py_sod_metrics.WeightedFmeasure(),
        py_sod_metrics.Smeasure(),
        py_sod_metrics.Emeasure(),
    )
    fm = py_sod_metrics.FmeasureV2({"fm": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=False)})
    n = 0
    for p, m in zip(pred, mask, strict=True):
        n += 1
        p, m = np.asarray(p), np.asarray(m)
        p, m = p.reshape(p.shape[-2:]), m.reshape(m.shape[-2:])
        if p.shape != m.shape:
            raise ValueError(f"prediction {p.shape} and mask {m.shape} differ in shape")
        p8 = np.round(np.clip(p.astype(np.float64), 0, 1) * 255).astype(np.uint8)
        g8 = np.where(m > 0.5, 255, 0).astype(np.uint8)
        for metric in (mae, wfm, sm, em, fm):
            metric.step(pred=p8, gt=g8)
    if n == 0:
        return dict.fromkeys(SOD_METRICS, float("nan"))
    return {
        "mae": float(mae.get_results()["mae"]),
        "wfm": float(wfm.get_results()["wfm"]),
        "sm": float(sm.get_results()["sm"]),
        "em": float(em.get_results()["em"]["curve"].mean()),
        "maxf": float(fm.get_results()["fm"]["dynamic"].max()),
    }
