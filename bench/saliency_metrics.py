"""What sAUC's negatives do to a prediction that is nothing but the centre prior.

300 images whose fixations are drawn from a centred Gaussian (sigma a sixth of each side), in two
settings: sparse (5-20 fixations an image at SALICON's 640x480) and dense (50-150 an image at a
model's 256x192 input, SALICON-like counts re-binned); the prediction is the centre bias of 300
other such images (`CenterBias`, IG's baseline). A metric that discounts centre bias must score it
about 0.5. Three definitions of sAUC's negatives, and AUC-Judd / AUC-Borji (which do not discount
it) beside them:

- pysaliency's (hwnas's default, `--sauc all`): every other image's fixations, each counted;
- the MIT benchmark's (`--sauc mit`): fixations drawn from 10 random other images (AUC_shuffled.m);
- the one hwnas used before issue 21: the binary union of all other images' fixated pixels, minus
  this image's: where the others' fixations cover most pixels (the dense setting) its negatives are
  nearly uniform and sAUC drifts towards AUC-Judd.

Usage: python -m bench.saliency_metrics [--images 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import machine
from hwnas.data.metrics import saliency as metrics

SETTINGS = {"sparse": ((480, 640), (5, 20)), "dense": ((192, 256), (50, 150))}  # (H, W), fixations an image


def centre_biased(n: int, seed: int, size: tuple[int, int], counts: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        k = int(rng.integers(counts[0], counts[1] + 1))
        ys = np.clip(rng.normal(h / 2, h / 6, k), 0, h - 1).astype(np.int64)
        xs = np.clip(rng.normal(w / 2, w / 6, k), 0, w - 1).astype(np.int64)
        out.append(np.stack([ys, xs], 1))
    return out


def union_sauc(prior: np.ndarray, points: list[np.ndarray]) -> float:
    """The earlier definition: negatives = pixels fixated in any other image and not in this one."""
    maps = [metrics.fixation_map(p, prior.shape) for p in points]
    total = np.sum(maps, axis=0)
    values = []
    for own in maps:
        negatives = ((total - own) > 0) & ~own
        values.append(metrics.auc(prior[own], prior[negatives]))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    n = args.images
    print(f"machine: {machine()}; {n} centre-biased images, the prediction = the centre prior")
    print("| setting | sAUC negatives | sAUC | AUC-Judd | AUC-Borji | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for setting, (size, counts) in SETTINGS.items():
        label = f"{setting}: {size[1]}x{size[0]}, {counts[0]}-{counts[1]} fixations"
        prior = metrics.CenterBias.from_points(centre_biased(n, 0, size, counts), [size] * n).at(size)
        scored = centre_biased(n, 1, size, counts)
        for name, shuffle in (("every other image's, counted (pysaliency)", "all"), ("10 random images (MIT)", "mit")):
            start = time.perf_counter()
            s = metrics.score_saliency([prior] * n, [prior] * n, scored, shuffle=shuffle)
            took = time.perf_counter() - start
            row = f"{s['sauc']:.3f} | {s['auc_judd']:.3f} | {s['auc_borji']:.3f} | {took:.1f}"
            print(f"| {label} | {name} | {row} |")
        start = time.perf_counter()
        old, took = union_sauc(prior, scored), time.perf_counter() - start
        print(f"| {label} | before issue 21: union of the others' pixels | {old:.3f} | | | {took:.1f} |")


if __name__ == "__main__":
    main()
