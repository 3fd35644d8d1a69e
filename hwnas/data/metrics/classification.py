"""Classification's metric: top-1 accuracy."""

from __future__ import annotations

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest-scoring class is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
