"""The metrics hwnas reports, by task: their keys, the names the papers' tables use, and which way is
better."""

from __future__ import annotations

SALIENCY_METRICS = ("auc_judd", "auc_borji", "sauc", "cc", "kld", "nss", "sim", "ig")
SOD_METRICS = ("mae", "wfm", "sm", "em", "maxf")
LABELS = {  # the names the papers' tables use
    "auc_judd": "AUC-J",
    "auc_borji": "AUC-B",
    "sauc": "sAUC",
    "cc": "CC",
    "kld": "KLD",
    "nss": "NSS",
    "sim": "SIM",
    "ig": "IG",
    "mae": "MAE",
    "wfm": "wF",
    "sm": "S-m",
    "em": "E-m",
    "maxf": "maxF",
    "top1": "top-1",
    "miou": "mIoU",
    "pixel_acc": "pixel acc",
}
SEGMENTATION_METRICS = ("miou", "pixel_acc")
HIGHER_IS_BETTER = {m: m not in ("kld", "mae") for m in (*SALIENCY_METRICS, *SOD_METRICS, *SEGMENTATION_METRICS)}
