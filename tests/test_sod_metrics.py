"""SOD metrics (PySODMetrics behind `score_sod`) against hand-computed values and known identities.

Predictions use multiples of 0.2, which are exact in uint8 (0, 51, 102, 153, 204, 255), and contain
both 0 and 1 so the evaluator's per-image min-max stretch leaves them as they are.
"""

import sys

import numpy as np
import pytest

from hwnas.data.metrics.names import HIGHER_IS_BETTER, SOD_METRICS
from hwnas.data.metrics.sod import score_sod
from hwnas.errors import HwnasError


def _nchw(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)[None, None]


PRED = np.array(
    [
        [1.0, 0.8, 0.2, 0.0],
        [0.6, 1.0, 0.0, 0.4],
        [0.0, 0.2, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.2],
    ]
)
MASK = np.zeros((4, 4))
MASK[:2, :2] = 1


def test_keys_and_directions():
    assert set(score_sod(_nchw(PRED), _nchw(MASK))) == set(SOD_METRICS) == {"mae", "wfm", "sm", "em", "maxf"}
    assert HIGHER_IS_BETTER["mae"] is False
    assert all(HIGHER_IS_BETTER[m] for m in ("wfm", "sm", "em", "maxf"))


def test_mae_and_maxf_hand_computed():
    # |pred - mask| on the 2x2 object: 0, .2, .4, 0 (sum .6); on the 12 background pixels:
    # .2, 0, 0, .4, 0, .2, 0, 0, 0, 0, 0, .2 (sum 1.0) -> (0.6 + 1.0) / 16 = 0.1
    scores = score_sod(_nchw(PRED), _nchw(MASK))
    assert scores["mae"] == pytest.approx(0.1)
    # every object pixel (>= .6) outranks every background pixel (<= .4): a threshold between them
    # gives precision = recall = 1, so the max F-measure is 1
    assert scores["maxf"] == pytest.approx(1.0)
    assert 0 < scores["sm"] < 1 and 0 < scores["wfm"] < 1


def test_maxf_with_one_false_positive():
    # 4 object pixels at 1 plus one background pixel at 1, the rest 0: the best threshold keeps the
    # five ones, P = 4/5, R = 1, F = (1 + .3) P R / (.3 P + R) = 1.04 / 1.24
    pred = MASK.copy()
    pred[3, 3] = 1
    assert score_sod(_nchw(pred), _nchw(MASK))["maxf"] == pytest.approx(1.04 / 1.24)


def test_perfect_prediction():
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:40, 10:30] = True
    scores = score_sod(_nchw(mask.astype(float)), mask[None, None])
    assert scores["mae"] == 0
    assert scores["sm"] == pytest.approx(1.0, abs=1e-9)
    assert scores["wfm"] == pytest.approx(1.0, abs=1e-9)
    assert scores["maxf"] == pytest.approx(1.0)
    # E-measure divides the enhanced-alignment sum by (N - 1): a perfect binarisation scores N/(N-1);
    # at 255 of the 256 thresholds (>= 1 .. >= 255) the binarisation is perfect, at ">= 0" every
    # pixel is foreground, whose alignment term is 0 on the object, (0 + 1)^2/4 = 1/4 per pixel
    # everywhere, so the mean curve is N/(N-1) * (255 + 1/4) / 256
    n = mask.size
    assert scores["em"] == pytest.approx(n / (n - 1) * 255.25 / 256)


def test_prediction_is_min_max_stretched_per_image():
    # 0.2 on the background and 0.6 on the object stretch to 0 and 1: a perfect map
    mask = np.zeros((16, 16))
    mask[4:10, 5:12] = 1
    scores = score_sod(_nchw(np.where(mask > 0, 0.6, 0.2)), _nchw(mask))
    assert scores["mae"] == 0 and scores["wfm"] == pytest.approx(1.0)


def test_smeasure_on_masks_of_one_class():
    # Fan et al.'s special cases: S = 1 - mean(pred) without foreground, S = mean(pred) without background
    zero = np.zeros((4, 4))
    assert score_sod(_nchw(zero), _nchw(zero))["sm"] == 1.0
    pred = np.array([[0, 0.2, 0.4, 0.6], [0.8, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])  # sum 3.0, mean .1875
    on_zero = score_sod(_nchw(pred), _nchw(zero))
    assert on_zero["sm"] == pytest.approx(1 - 0.1875) and on_zero["mae"] == pytest.approx(0.1875)
    assert on_zero["wfm"] == 0  # PySODMetrics scores an image without foreground as wF = 0
    assert score_sod(_nchw(pred), _nchw(np.ones((4, 4))))["sm"] == pytest.approx(0.1875)


def test_inverted_mask_scores_low_and_images_are_averaged():
    mask = np.zeros((64, 64))
    mask[20:40, 10:30] = 1
    inverted = score_sod(_nchw(1 - mask), _nchw(mask))
    # every object pixel is wrong by 1 (and so is its Gaussian-smoothed error, the object being more
    # than 3 px from the border): weighted recall 1 - 1 = 0, so wF = 0
    assert inverted["mae"] == 1.0 and inverted["wfm"] < 0.1 and inverted["wfm"] == pytest.approx(0, abs=1e-12)
    assert inverted["sm"] == 0.0
    # the best threshold is ">= 0": everything foreground, P = 400/4096, R = 1
    p = 400 / 4096
    assert inverted["maxf"] == pytest.approx(1.3 * p / (0.3 * p + 1))
    both = score_sod(np.concatenate([_nchw(mask), _nchw(1 - mask)]), np.concatenate([_nchw(mask)] * 2))
    assert both["mae"] == pytest.approx(0.5) and both["wfm"] == pytest.approx(0.5)


def test_bool_masks_and_shapes():
    a = score_sod(_nchw(PRED), _nchw(MASK))
    assert score_sod(_nchw(PRED), _nchw(MASK).astype(bool)) == a
    assert score_sod(PRED[None], MASK[None]) == a  # (N, H, W) works too
    with pytest.raises(ValueError, match="differ in shape"):
        score_sod(_nchw(PRED), _nchw(MASK[:2]))


def test_missing_pysodmetrics_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "py_sod_metrics", None)  # makes `import py_sod_metrics` fail
    with pytest.raises(HwnasError, match=r"pip install 'hwnas\[sod\]'"):
        score_sod(_nchw(PRED), _nchw(MASK))
