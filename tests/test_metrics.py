"""Saliency metrics and the SalNAS loss against hand-computed values and known identities."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.data.metrics import saliency as metrics
from hwnas.data.metrics.classification import top1
from hwnas.data.metrics.names import SALIENCY_METRICS
from hwnas.errors import HwnasError
from hwnas.train import losses


def test_cc_hand_computed():
    # x - mean = (-1.5, -.5, .5, 1.5), y - mean = (-1.75, -.75, .25, 2.25): 6.5 / sqrt(5 * 8.75)
    value = metrics.cc(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]))
    assert value == pytest.approx(6.5 / math.sqrt(5 * 8.75))
    rng = np.random.default_rng(0)
    x = rng.random((8, 8))
    assert metrics.cc(x, x) == pytest.approx(1.0)
    assert metrics.cc(x, 1 - x) == pytest.approx(-1.0)
    assert metrics.cc(np.full((8, 8), 0.3), x) == 0.0  # a constant prediction: pysaliency's 0, not NaN


def test_kld_hand_computed_and_zero_on_itself():
    uniform, peaked = np.ones((2, 2)), np.array([[2.0, 0.0], [0.0, 2.0]])
    assert metrics.kld(uniform, peaked) == pytest.approx(math.log(2), rel=1e-9)
    # MIT's eps inside the log: .5 log(eps + .5 / (0 + eps)) at each fixated half
    assert metrics.kld(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(
        math.log(metrics.EPS + 1 / metrics.EPS)
    )
    assert metrics.kld(peaked, peaked) == pytest.approx(0.0, abs=1e-12)


def test_nss_hand_computed_and_large_at_the_peak():
    # values 0,0,0,4: mean 1, sample std 2 -> (4 - 1) / 2
    assert metrics.nss(np.array([[0, 0], [0, 4.0]]), np.array([[0, 0], [0, 1]])) == pytest.approx(1.5)
    sal = np.zeros((16, 16))
    fix = np.zeros((16, 16))
    sal[3, 4] = sal[10, 12] = 1
    fix[3, 4] = fix[10, 12] = 1
    assert metrics.nss(sal, fix) > 5


def test_sim_hand_computed():
    assert metrics.sim(np.array([[1, 0], [0, 1.0]]), np.array([[1, 1], [0, 0.0]])) == pytest.approx(0.5)
    x = np.random.default_rng(1).random((5, 5))
    assert metrics.sim(x, x) == pytest.approx(1.0)


def test_auc_judd_hand_computed():
    # thresholds 0.8 -> (fp 0, tp .5), 0.35 -> (fp .5, tp 1): area .375 + .5
    sal = np.array([[0.1, 0.4], [0.35, 0.8]])
    fix = np.array([[0, 0], [1, 1]])
    assert metrics.auc_judd(sal, fix) == pytest.approx(0.875)


def test_auc_of_a_random_map_is_about_one_half():
    rng = np.random.default_rng(2)
    sal, fix = rng.random((64, 64)), rng.random((64, 64)) < 0.05
    assert metrics.auc_judd(sal, fix) == pytest.approx(0.5, abs=0.05)
    assert metrics.auc_borji(sal, fix, rng) == pytest.approx(0.5, abs=0.05)
    counts = rng.integers(0, 3, (64, 64))
    assert metrics.sauc(sal, np.argwhere(fix), counts) == pytest.approx(0.5, abs=0.05)


def test_auc_counts_ties_one_half_and_weights_negatives():
    assert metrics.auc(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == pytest.approx(0.625)  # a tie counts 1/2
    # negatives 0 (x1) and 3 (x3); positive 2 beats one of four negatives
    assert metrics.auc(np.array([2.0]), np.array([0.0, 3.0]), np.array([1, 3])) == pytest.approx(0.25)


def test_sauc_equals_a_count_weighted_auc_by_brute_force():
    """Every (positive fixation, negative fixation) pair, each counted as often as it occurs."""
    rng = np.random.default_rng(4)
    sal = np.round(rng.random((10, 12)), 1)  # rounded: many ties
    points = rng.integers(0, [10, 12], size=(15, 2))
    points = np.concatenate([points, points[:4]])  # fixated twice
    counts = rng.integers(0, 4, size=(10, 12))
    pos = sal[points[:, 0], points[:, 1]]
    neg = np.repeat(sal.ravel(), counts.ravel())
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.sauc(sal, points, counts) == pytest.approx(wins / (pos.size * neg.size), abs=1e-12)


def _centre_biased_set(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        k = int(rng.integers(5, 20))
        ys = np.clip(rng.normal(h / 2, h / 6, k), 0, h - 1).astype(np.int64)
        xs = np.clip(rng.normal(w / 2, w / 6, k), 0, w - 1).astype(np.int64)
        out.append(np.stack([ys, xs], 1))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", ["all", "mit"])
def test_the_centre_prior_scores_sauc_one_half_but_a_high_auc(shuffle):
    """sAUC discounts centre bias: a prediction that is only the centre prior scores about 0.5, on
    300 images whose fixations are centre-biased, while its AUC-Judd is high."""
    size = (48, 64)
    train, scored = _centre_biased_set(300, size, 0), _centre_biased_set(300, size, 1)
    prior = metrics.CenterBias.from_points(train, [size] * 300).at(size)
    scores = metrics.score_saliency([prior] * 300, [prior] * 300, scored, shuffle=shuffle)
    assert scores["sauc"] == pytest.approx(0.5, abs=0.03)
    assert scores["auc_judd"] > 0.8 and scores["auc_borji"] > 0.75


def test_metrics_equal_pysaliency_on_the_same_maps():
    """tests/data/saliency_metrics: values pysaliency 0.2.22 computed (tools/saliency_metric_fixtures.py)."""
    folder = Path(__file__).parent / "data" / "saliency_metrics"
    ref = json.loads((folder / "pysaliency.json").read_text())
    with np.load(folder / "inputs.npz", allow_pickle=False) as z:
        n = len(ref["cc"])
        sal, gt, points = ([z[f"{k}{i}"] for i in range(n)] for k in ("sal", "gt", "points"))
    sizes = [s.shape for s in sal]
    assert len(set(sizes)) == 2 and any(len(np.unique(p, axis=0)) < len(p) for p in points)
    for i in range(n):
        others = np.zeros(sizes[i], dtype=np.int64)
        for j in range(n):
            if j != i:  # other images' fixations scaled as pysaliency scales them
                np.add.at(others, tuple(metrics.scaled_points(points[j], sizes[j], sizes[i]).T), 1)
        assert metrics.sauc(sal[i], points[i], others) == pytest.approx(ref["sauc"][i], abs=1e-12)
        fix = metrics.fixation_map(points[i], sizes[i])
        assert metrics.auc_judd(sal[i], fix) == pytest.approx(ref["auc_judd"][i], abs=1e-12)
        k = sal[i].size  # pysaliency's NSS divides by the population std, MATLAB's NSS.m by the sample std
        assert metrics.nss(sal[i], fix) * np.sqrt(k / (k - 1)) == pytest.approx(ref["nss_ddof0"][i], rel=1e-9)
        assert metrics.cc(sal[i], gt[i]) == pytest.approx(ref["cc"][i], abs=1e-12)
        assert metrics.kld(sal[i], gt[i]) == pytest.approx(ref["kld"][i], abs=1e-12)
        # pysaliency's SIM does not subtract a non-negative map's minimum; similarity.m does
        assert metrics.sim(sal[i], gt[i]) == pytest.approx(ref["sim_of_min_subtracted"][i], abs=1e-12)
    scores = metrics.score_saliency(sal, gt, points)
    assert scores["sauc"] == pytest.approx(np.mean(ref["sauc"]), abs=1e-12)


def test_mit_split_auc_hand_computed():
    # positives .95 and .25; negatives .55 and .05: thresholds 1.0 .. 0.0 step .1
    # tp/fp: >=.9 (.5, 0), >=.5 (.5, .5), >=.2 (1, .5), >=0 (1, 1): area .25 + .5 = .75
    area = metrics._split_auc(np.array([0.95, 0.25]), np.array([[0.55], [0.05]]), 0.1)
    assert area == pytest.approx([0.75])


def test_auc_borji_and_mit_sauc_draw_as_the_mit_code():
    rng = np.random.default_rng(5)
    sal = rng.random((9, 11))
    fix = rng.random((9, 11)) < 0.2
    s = (sal - sal.min()) / (sal.max() - sal.min())
    draws = np.random.default_rng(6).integers(0, sal.size, size=(int(fix.sum()), 100))
    expected = metrics._split_auc(s.ravel()[fix.ravel()], s.ravel()[draws], 0.1).mean()
    assert metrics.auc_borji(sal, fix, np.random.default_rng(6)) == pytest.approx(expected)
    other = rng.random((9, 11)) < 0.1  # fewer other fixations than own: all of them, 100 times
    value = metrics.sauc_mit(sal, fix, other, np.random.default_rng(7))
    only = metrics._split_auc(s.ravel()[fix.ravel()], s.ravel()[other.ravel()][:, None], 0.1)[0]
    assert value == pytest.approx(only)


def test_information_gain_hand_computed_with_the_mit_normalisation():
    # prediction (1, 3) -> min-max (0, 1) -> (0, 1); baseline (1, 2) -> (0, 1): equal at the fixation
    assert metrics.information_gain(np.array([[1.0, 3.0]]), np.array([[0, 1]]), np.array([[1.0, 2.0]])) == (
        pytest.approx(0.0, abs=1e-12)
    )
    # prediction (0, 1, 1) -> (0, .5, .5); baseline (0, 1, 3) -> (0, 1/3, 1) / (4/3) = (0, .25, .75)
    value = metrics.information_gain(np.array([[0.0, 1.0, 1.0]]), np.array([[0, 1, 0]]), np.array([[0.0, 1.0, 3.0]]))
    assert value == pytest.approx(math.log2(0.5 / 0.25))


def test_center_bias_follows_the_training_fixations():
    size = (30, 40)
    left = [np.array([[15, 5], [14, 6], [16, 4]])] * 10  # every fixation on the left
    bias = metrics.CenterBias.from_points(left, [size] * 10)
    density = bias.at(size)
    assert density.shape == size and density.sum() == pytest.approx(1.0)
    assert np.unravel_index(density.argmax(), size)[1] < 10
    assert bias.at((60, 80)).argmax() // 80 == pytest.approx(30, abs=3)  # same place at twice the size
    with pytest.raises(HwnasError, match="fixations"):
        metrics.CenterBias.from_points([np.zeros((0, 2), dtype=np.int64)], [size])


def test_score_saliency_averages_and_shuffles_across_images():
    rng = np.random.default_rng(3)
    gt = list(rng.random((3, 12, 12)))
    points = [np.argwhere(rng.random((12, 12)) < 0.1) for _ in range(3)]
    bias = metrics.CenterBias.from_points(points, [(12, 12)] * 3)
    scores = metrics.score_saliency(gt, gt, points, baseline=bias)
    assert scores["cc"] == pytest.approx(1.0) and scores["kld"] == pytest.approx(0.0, abs=1e-9)
    counts = [np.zeros((12, 12), dtype=np.int64) for _ in range(3)]
    for i in range(3):
        for j in range(3):
            if j != i:
                np.add.at(counts[i], tuple(points[j].T), 1)
    assert scores["sauc"] == pytest.approx(np.mean([metrics.sauc(gt[i], points[i], counts[i]) for i in range(3)]))
    assert set(scores) == set(SALIENCY_METRICS) and np.isfinite(scores["ig"])
    assert math.isnan(metrics.score_saliency(gt, gt, points)["ig"])  # no baseline, no IG
    with pytest.raises(HwnasError, match="allowed: all, mit"):
        metrics.score_saliency(gt, gt, points, shuffle="borji")


def test_top1():
    assert top1(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 1, 1])) == pytest.approx(2 / 3)


# ---- losses (SalNAS Eq. 4-8) ----------------------------------------------------------------
def test_losses_vanish_on_the_ground_truth_and_match_the_metrics():
    g = torch.rand(2, 1, 8, 8)
    p = torch.rand(2, 1, 8, 8)
    assert float(losses.cc_loss(g, g)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.kld_loss(g, g)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.cc_loss(p, g)) == pytest.approx(
        1 - np.mean([metrics.cc(p[i, 0].numpy(), g[i, 0].numpy()) for i in range(2)]), abs=1e-5
    )
    assert float(losses.kld_loss(p, g)) == pytest.approx(
        np.mean([metrics.kld(p[i, 0].numpy(), g[i, 0].numpy()) for i in range(2)]), abs=1e-4
    )


def test_nss_loss_hand_computed():
    # a one-hot map of 64 pixels standardised (unbiased std 1/8) peaks at (63/64) * 8 = 7.875
    p = torch.zeros(1, 1, 8, 8)
    p[0, 0, 2, 5] = 1
    assert float(losses.nss_loss(p, p)) == pytest.approx(1 - 1 / (1 + math.exp(-7.875)), rel=1e-3)
    no_fixations = torch.zeros(1, 1, 8, 8)
    assert float(losses.nss_loss(p, no_fixations)) == 0.0
    # two images: 7.875 at the first one's fixation, (0 - 1/64) * 8 = -0.125 at the second's; the
    # authors' code takes the sigmoid of the batch's NSS (3.875), not the mean of the sigmoids
    pair = torch.cat([p, p])
    fixations = torch.zeros(2, 1, 8, 8)
    fixations[0, 0, 2, 5] = fixations[1, 0, 0, 0] = 1
    assert float(losses.nss_loss(pair, fixations)) == pytest.approx(1 - 1 / (1 + math.exp(-3.875)), rel=1e-4)


@pytest.mark.slow
def test_saliency_loss_terms_equal_the_authors_code():
    """Their `kldiv`, `cc` and `nss` (chakkritte/SalNAS `salnas/losses/loss.py`, run by
    tools/salnas_fixtures.py) on seeded maps; `loss_func` adds kldiv + (1 - cc) + (1 - sigmoid(nss))."""
    data = Path(__file__).parent / "data" / "salnas"
    theirs = json.loads((data / "salnas-losses.json").read_text())["values"]
    arrays = np.load(data / "salnas-losses.npz")
    pred, gt, fix = (torch.from_numpy(arrays[k]) for k in ("pred", "gt", "fix"))
    assert float(losses.kld_loss(pred, gt)) == pytest.approx(theirs["kldiv"], rel=1e-5)
    assert float(losses.cc_loss(pred, gt)) == pytest.approx(1 - theirs["cc"], rel=1e-5)
    assert float(losses.nss_loss(pred, fix)) == pytest.approx(1 - 1 / (1 + math.exp(-theirs["nss"])), rel=1e-5)


def test_salnas_loss_is_the_sum_and_has_gradients():
    p = torch.rand(2, 1, 8, 8, requires_grad=True)
    g, f = torch.rand(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) < 0.2).float()
    total = losses.salnas_loss(p, g, f)
    parts = losses.kld_loss(p, g) + losses.cc_loss(p, g) + losses.nss_loss(p, f)
    assert float(total.detach()) == pytest.approx(float(parts.detach()))
    total.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits = torch.randn(4, 10)
    labels = torch.tensor([1, 3, 5, 7])
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    assert float(losses.soft_cross_entropy(logits, onehot)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6
    )
