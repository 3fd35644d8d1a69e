"""Training losses: the SalNAS saliency loss (Termritthikun et al., Eq. 4-8) and soft-target cross entropy.

All functions take batched tensors and return a scalar mean over the batch. Saliency predictions
and maps are non-negative maps shaped (B, 1, H, W) or (B, H, W); fixations are binary maps of
the same shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def kld_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 5: sum_i G_i log(eps + G_i / (P_i + eps)), with P and G normalised to sum 1."""
    p, g = _flat(pred), _flat(gt)
    p = p / (p.sum(1, keepdim=True) + EPS)
    g = g / (g.sum(1, keepdim=True) + EPS)
    return (g * torch.log(EPS + g / (p + EPS))).sum(1).mean()


def cc_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 6: 1 - covar(P, G) / (sigma(P) sigma(G)), Pearson's correlation per image."""
    p, g = _flat(pred), _flat(gt)
    p = p - p.mean(1, keepdim=True)
    g = g - g.mean(1, keepdim=True)
    cc = (p * g).sum(1) / (torch.sqrt((p * p).sum(1) * (g * g).sum(1)) + EPS)
    return (1 - cc).mean()


def nss_loss(pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """Eq. 7-8: 1 - (1/N) sum over the N fixations of sigmoid(P_bar_i), P_bar the standardised map.

    Eq. 7 is written over all pixels i of sigma(P_bar_i x F_i); read literally, every unfixated
    pixel would add sigmoid(0) = 0.5, so the sum runs over the fixated pixels, as NSS does.
    Images without fixations do not contribute.
    """
    p, f = _flat(pred), _flat(fixations)
    p = (p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + EPS)
    count = f.sum(1)
    has = count > 0
    if not bool(has.any()):
        return p.sum() * 0
    score = (torch.sigmoid(p) * f).sum(1)[has] / count[has]
    return (1 - score).mean()


def salnas_loss(pred: torch.Tensor, gt: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """Eq. 4: KLD(P, G) + CC(P, G) + NSS(P, F), each term in its loss form."""
    return kld_loss(pred, gt) + cc_loss(pred, gt) + nss_loss(pred, fixations)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross entropy against a probability vector per sample (hard labels as one-hot)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
