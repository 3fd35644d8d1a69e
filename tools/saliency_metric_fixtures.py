"""Write tests/data/saliency_metrics/: seeded maps and fixations, and the values pysaliency computes
on them (the reference `hwnas.data.metrics.saliency` is checked against; `tests/test_metrics.py`).

pysaliency is not a dependency of hwnas; run this with an environment that has it (0.2.22 made the
committed file) and hwnas's own imports not needed:

    python -m venv /tmp/psv && /tmp/psv/bin/pip install pysaliency==0.2.22 torch
    /tmp/psv/bin/python tools/saliency_metric_fixtures.py tests/data/saliency_metrics

Six images of two sizes (four 24x32, two 30x40, so shuffled negatives are rescaled between sizes),
smooth random maps, 6-30 fixations each with some fixated twice (so multiplicity matters). Inputs go
to `inputs.npz` (plain arrays, no pickles), the reference values to `pysaliency.json`.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    sizes = [(24, 32)] * 4 + [(30, 40)] * 2
    out: dict[str, np.ndarray] = {}
    for i, (h, w) in enumerate(sizes):
        out[f"sal{i}"] = gaussian_filter(rng.random((h, w)), 2.0) ** 3
        out[f"gt{i}"] = gaussian_filter(rng.random((h, w)), 1.5) ** 2
        k = int(rng.integers(6, 31))
        ys = np.clip(rng.normal(h / 2, h / 5, k), 0, h - 1).astype(np.int64)
        xs = np.clip(rng.normal(w / 2, w / 5, k), 0, w - 1).astype(np.int64)
        pts = np.stack([ys, xs], 1)
        out[f"points{i}"] = np.concatenate([pts, pts[: k // 4]])  # a quarter fixated twice
    return out


def reference(inputs: dict[str, np.ndarray]) -> dict[str, list[float]]:
    if not hasattr(np, "trapz"):  # pysaliency 0.2.22 calls np.trapz, renamed np.trapezoid in numpy 2
        np.trapz = np.trapezoid
    import pysaliency
    from pysaliency.metrics import CC, SIM, MIT_KLDiv

    n = sum(1 for k in inputs if k.startswith("sal"))
    maps = [inputs[f"sal{i}"] for i in range(n)]

    class Given(pysaliency.SaliencyMapModel):
        def _saliency_map(self, stimulus):
            return next(m for m in maps if m.shape == stimulus.shape[:2] and np.array_equal(m, stimulus[:, :, 0]))

    stimuli = pysaliency.Stimuli([np.repeat(m[:, :, None], 3, axis=2) for m in maps])
    pts = [inputs[f"points{i}"] for i in range(n)]
    every = pysaliency.Fixations.create_without_history(
        np.concatenate([p[:, 1] for p in pts]).astype(float),
        np.concatenate([p[:, 0] for p in pts]).astype(float),
        np.concatenate([np.full(len(p), i) for i, p in enumerate(pts)]),
    )
    unique = [np.unique(p, axis=0) for p in pts]
    once = pysaliency.Fixations.create_without_history(
        np.concatenate([p[:, 1] for p in unique]).astype(float),
        np.concatenate([p[:, 0] for p in unique]).astype(float),
        np.concatenate([np.full(len(p), i) for i, p in enumerate(unique)]),
    )
    model = Given()
    return {
        "sauc": [float(v) for v in model.AUC_per_image(stimuli, every, nonfixations="shuffled")],
        "auc_judd": [
            float(v) for v in model.AUC_per_image(stimuli, once, nonfixations="unfixated", thresholds="fixations")
        ],
        "nss_ddof0": [
            float(np.mean(pysaliency.metrics.NSS(m, p[:, 1], p[:, 0]))) for m, p in zip(maps, unique, strict=True)
        ],
        "cc": [float(CC(m, inputs[f"gt{i}"])) for i, m in enumerate(maps)],
        # SIM of the maps less their minima: similarity.m min-max scales, pysaliency's SIM does not
        "sim_of_min_subtracted": [
            float(SIM(m - m.min(), inputs[f"gt{i}"] - inputs[f"gt{i}"].min())) for i, m in enumerate(maps)
        ],
        "kld": [float(MIT_KLDiv(m, inputs[f"gt{i}"])) for i, m in enumerate(maps)],
    }


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs()
    np.savez(out / "inputs.npz", **inputs)
    values = {"pysaliency": version("pysaliency"), **reference(inputs)}
    (out / "pysaliency.json").write_text(json.dumps(values, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
