"""Training losses: the SalNAS saliency loss (Termritthikun et al., Eq. 4-8) and soft-target cross entropy.

All functions take batched tensors and return a scalar mean over the batch. Saliency predictions
and maps are non-negative maps shaped (B, 1, H, W) or (B, H, W); fixations are binary maps of
the same shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hwnas.space.tasks import IGNORE

EPS = 1e-7


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


KLD_EPS = 2.2204e-16  # the authors' `kldiv` (salnas/losses/loss.py), MATLAB's eps as in the MIT benchmark


def kld_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 5: sum_i G_i log(eps + G_i / (P_i + eps)), with P and G normalised to sum 1, eps as the
    authors' `kldiv` (2.2204e-16; a larger one shifts the loss by 1e-4 on 24x32 maps)."""
    p, g = _flat(pred), _flat(gt)
    p = p / (p.sum(1, keepdim=True) + KLD_EPS)
    g = g / (g.sum(1, keepdim=True) + KLD_EPS)
    return (g * torch.log(KLD_EPS + g / (p + KLD_EPS))).sum(1).mean()


def cc_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 6: 1 - covar(P, G) / (sigma(P) sigma(G)), Pearson's correlation per image."""
    p, g = _flat(pred), _flat(gt)
    p = p - p.mean(1, keepdim=True)
    g = g - g.mean(1, keepdim=True)
    cc = (p * g).sum(1) / (torch.sqrt((p * p).sum(1) * (g * g).sum(1)) + EPS)
    return (1 - cc).mean()


def nss_loss(pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """Eq. 7-8 as the authors' code computes them (chakkritte/SalNAS `salnas/losses/loss.py`,
    `loss_func` and `nss`): 1 - sigmoid(NSS), where NSS is the batch mean of each image's mean
    standardised prediction (unbiased std) at its fixations. Eq. 7 puts the sigmoid inside the sum
    over pixels; their code applies it once, to the batch's NSS. Images without fixations are left
    out (theirs would divide by zero); a batch without any gives 0.
    """
    p, f = _flat(pred), _flat(fixations)
    p = (p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + EPS)
    count = f.sum(1)
    has = count > 0
    if not bool(has.any()):
        return p.sum() * 0
    nss = ((p * f).sum(1)[has] / count[has]).mean()
    return 1 - torch.sigmoid(nss)


def salnas_loss(pred: torch.Tensor, gt: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """Eq. 4: KLD(P, G) + CC(P, G) + NSS(P, F), each term in its loss form, as `loss_func` of the
    authors' `salnas/losses/loss.py` adds them (`kldiv + (1 - cc) + (1 - sigmoid(nss))`)."""
    return kld_loss(pred, gt) + cc_loss(pred, gt) + nss_loss(pred, fixations)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross entropy against a probability vector per sample (hard labels as one-hot)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


# ---- salient-object detection (FocusNet Eq. 3-4 with TRACER's adaptive pixel intensity loss) -------
TRACER_WINDOWS = (3, 15, 31)  # avg-pool windows of TRACER's pixel weights, in pixels
TRACER_WEIGHT = 0.7  # TRACER's weight of each of the three terms (FocusNet Eq. 4's w1 = w2 = w3)


def tracer_pixel_weights(mask: torch.Tensor) -> torch.Tensor:
    """TRACER's omega = 1 + 0.5 (|avgpool3(G) - G| + |avgpool15(G) - G| + |avgpool31(G) - G|) G: object
    pixels near a boundary weigh up to 2.5, background 1 (zero-padded pooling, as their code)."""
    g = mask.float()
    near = sum((F.avg_pool2d(g, k, stride=1, padding=k // 2) - g).abs() for k in TRACER_WINDOWS)
    return 1 + 0.5 * near * g


def tracer_terms(pred: torch.Tensor, gt: torch.Tensor, omega: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three terms of TRACER's `adaptive_pixel_intensity_loss` (util/losses.py, commit 8dacecc)
    as their code computes them, each a batch mean: aBCE = mean(bce) sum(omega) / sum(omega + 0.5),
    aIoU = 1 - (sum(p g omega) + 1) / (sum((p + g) omega) - sum(p g omega) + 1), aMAE = mean(|p - g|)
    sum(omega) / sum(omega - 1). Their BCE and L1 are batch means before the weighting (their
    `reduce=None` keeps torch's default 'mean'); an image without object pixels has sum(omega - 1) =
    0, where their aMAE is infinite: hwnas counts its aMAE as 0."""
    p, g, w = pred.float(), gt.float(), omega.float()
    dims = (2, 3)
    bce = F.binary_cross_entropy(p, g)
    mae = F.l1_loss(p, g)
    inter = (p * g * w).sum(dims)
    union = ((p + g) * w).sum(dims)
    boundary = (w - 1).sum(dims)
    return {
        "bce": ((w * bce).sum(dims) / (w + 0.5).sum(dims)).mean(),
        "iou": (1 - (inter + 1) / (union - inter + 1)).mean(),
        "l1": torch.where(boundary > 0, (w * mae).sum(dims) / boundary.clamp_min(1e-12), 0.0).mean(),
    }


def sod_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor,
    *,
    located: torch.Tensor | None = None,
    weights: tuple[float, float, float] = (TRACER_WEIGHT,) * 3,
) -> torch.Tensor:
    """FocusNet Eq. 3: w1 aBCE + w2 aIoU + w3 aMAE (Eq. 4, "elaborated in TRACER": TRACER's adaptive
    pixel intensity loss, `tracer_terms`, its weights 0.7 each), with pixel weights from the binary
    `mask`, against the target `gt` (the mask, or a distillation target), plus, with FOCUS, the
    auxiliary localization BCE of the logits `located` against the mask downscaled (area) to their size."""
    terms = tracer_terms(pred, gt, tracer_pixel_weights(mask))
    loss = weights[0] * terms["bce"] + weights[1] * terms["iou"] + weights[2] * terms["l1"]
    if located is not None:
        small = F.interpolate(mask.float(), size=tuple(located.shape[-2:]), mode="area")
        loss = loss + F.binary_cross_entropy_with_logits(located.float(), small)
    return loss


# ---- semantic segmentation (MoSegNAS; BiSeNet's auxiliary heads) ------------------------------------


def class_targets(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, C, H, W) one-hot targets of (B, 1, H, W) or (B, H, W) class ids; all zero where the id is `IGNORE`."""
    labels = labels.reshape(labels.shape[0], *labels.shape[-2:]).long()
    labelled = labels != IGNORE
    onehot = F.one_hot(torch.where(labelled, labels, 0), classes).permute(0, 3, 1, 2).float()
    return onehot * labelled[:, None]


OHEM_MIN_SHARE = 16  # OHEM keeps at least 1/16 of the labelled pixels (the BiSeNet reference's n_min)


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    labelled: torch.Tensor,
    aux: tuple[torch.Tensor, ...] = (),
    *,
    ohem: float = 0.0,
) -> torch.Tensor:
    """Pixel cross entropy against (B, C, H, W) soft targets, summed over pixels and divided by the
    number of labelled ones (`labelled`, (B, H, W) bool): with one-hot targets exactly
    `F.cross_entropy(logits, labels, ignore_index=IGNORE)`; a Self-KD mix (SalNAS Eq. 3) also
    distils the teacher on ignored pixels. Each auxiliary head's logits are upsampled (bilinear) to
    the target's size and add the same loss with weight 1 (BiSeNet Eq. 2).

    `ohem` > 0: online hard example mining as the BiSeNet reference trains (CoinCheung/BiSeNet,
    `OhemCELoss(0.7)` on the main and auxiliary heads): the mean over the pixels whose loss exceeds
    -log(ohem) (the label's probability under `ohem`), or over the `labelled / 16` largest losses
    when fewer do."""
    count = labelled.sum().clamp(min=1)

    def term(out: torch.Tensor) -> torch.Tensor:
        if tuple(out.shape[-2:]) != tuple(target.shape[-2:]):
            out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
        pixels = -(target * F.log_softmax(out.float(), dim=1)).sum(1)
        if ohem <= 0:
            return pixels.sum() / count
        return _hard_mean(pixels.flatten(), -math.log(ohem), int(labelled.sum()) // OHEM_MIN_SHARE)

    return sum((term(a) for a in aux), term(logits))


def _hard_mean(losses: torch.Tensor, threshold: float, at_least: int) -> torch.Tensor:
    """The mean of the losses above `threshold`, or of the `at_least` largest when fewer are."""
    hard = losses[losses > threshold]
    if hard.numel() < at_least:
        hard = losses.topk(at_least).values
    return hard.mean() if hard.numel() else losses.sum() * 0.0
