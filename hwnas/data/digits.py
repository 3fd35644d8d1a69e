"""scikit-learn's handwritten digits (1,797 8x8 images, 10 classes): a small real classification set
that ships inside a package, for the classification head. Grey levels are replicated to RGB and
resized to the requested resolution; the split is a fixed, seeded 70/20/10 (train/val/test) shuffle."""

from __future__ import annotations

import numpy as np
import torch

from hwnas.data.split import DataError, Split, resize_uint8

VAL_FRACTION = 0.2
TEST_FRACTION = 0.1


def digits(size: tuple[int, int], seed: int = 0) -> tuple[Split, Split, Split]:
    """(train, val, test) at (height, width) `size`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install 'hwnas[data]'") from None
    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255 / 16)).astype(np.uint8))[:, None].repeat(1, 3, 1, 1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val, n_test = int(round(len(labels) * VAL_FRACTION)), int(round(len(labels) * TEST_FRACTION))
    whole = Split(resize_uint8(images, size), {"label": labels})
    return (
        whole.subset(order[n_val + n_test :]),
        whole.subset(order[:n_val]),
        whole.subset(order[n_val : n_val + n_test]),
    )
