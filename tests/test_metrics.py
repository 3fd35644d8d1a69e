"""Saliency metrics and the SalNAS loss against hand-computed values and known identities."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.train import losses, metrics


def test_cc_hand_computed():
    # x - mean = (-1.5, -.5, .5, 1.5), y - mean = (-1.75, -.75, .25, 2.25): 6.5 / sqrt(5 * 8.75)
    value = metrics.cc(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]))
    assert value == pytest.approx(6.5 / math.sqrt(5 * 8.75))
    rng = np.random.default_rng(0)
    x = rng.random((8, 8))
    assert metrics.cc(x, x) == pytest.approx(1.0)
    assert metrics.cc(x, 1 - x) == pytest.approx(-1.0)


def test_kld_hand_computed_and_zero_on_itself():
    uniform, peaked = np.ones((2, 2)), np.array([[2.0, 0.0], [0.0, 2.0]])
    assert metrics.kld(uniform, peaked) == pytest.approx(math.log(2), rel=1e-9)
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
    assert metrics.sauc(sal, fix, rng.random((64, 64)) < 0.05) == pytest.approx(0.5, abs=0.05)


def test_sauc_uses_other_fixations_as_negatives():
    sal = np.array([[0.9, 0.2, 0.5, 0.1]])
    fix = np.array([[0, 0, 1, 0]])
    other = np.array([[1, 1, 1, 1]])  # the fixated pixel itself is not a negative
    assert metrics.sauc(sal, fix, other) == pytest.approx(2 / 3)
    assert metrics.auc(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == pytest.approx(0.625)  # a tie counts 1/2


def test_information_gain_hand_computed():
    value = metrics.information_gain(np.array([[1.0, 3.0]]), np.array([[0, 1]]), np.array([[1.0, 1.0]]))
    assert value == pytest.approx(math.log2(1.5))
    base = metrics.center_bias(9, 9)
    assert base.argmax() == 40 and metrics.information_gain(base, np.ones((9, 9)), base) == pytest.approx(0.0)


def test_score_saliency_averages_and_shuffles_across_images():
    rng = np.random.default_rng(3)
    gt = rng.random((3, 12, 12))
    fix = rng.random((3, 12, 12)) < 0.1
    scores = metrics.score_saliency(gt, gt, fix)
    assert scores["cc"] == pytest.approx(1.0) and scores["kld"] == pytest.approx(0.0, abs=1e-9)
    other = fix[1] | fix[2]
    expected = np.mean(
        [metrics.sauc(gt[0], fix[0], other), *(metrics.sauc(gt[i], fix[i], fix.sum(0) - fix[i]) for i in (1, 2))]
    )
    assert scores["sauc"] == pytest.approx(expected)
    assert set(scores) == set(metrics.SALIENCY_METRICS)


def test_top1():
    assert metrics.top1(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 1, 1])) == pytest.approx(2 / 3)


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
