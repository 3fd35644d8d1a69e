"""Write tests/data/tracer/: seeded predictions and masks, and the value of TRACER's own
`adaptive_pixel_intensity_loss` on them (Karel911/TRACER `util/losses.py`, imported from a checkout
the caller names; nothing of it is copied here). `hwnas.train.losses.tracer_loss` is checked
against it in tests/test_sod.py.

    git clone https://github.com/Karel911/TRACER /tmp/tracer
    python tools/tracer_fixtures.py --tracer /tmp/tracer --out tests/data/tracer

Three masks of 40x48 (one object each, of different sizes) and predictions near them (a sigmoid of
the mask plus noise); the batch goes through their function at once (their BCE and L1 are batch
means), and a second, single-mask batch too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 1, 40, 48), dtype=np.float32)
    for i, (h, w) in enumerate(((10, 12), (20, 16), (6, 30))):
        y, x = int(rng.integers(0, 40 - h)), int(rng.integers(0, 48 - w))
        masks[i, 0, y : y + h, x : x + w] = 1
    logits = 4 * (masks - 0.5) + rng.normal(0, 1.5, masks.shape)
    return (1 / (1 + np.exp(-logits))).astype(np.float32), masks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tracer))
    from util.losses import adaptive_pixel_intensity_loss

    pred, mask = make_inputs()
    batch = float(adaptive_pixel_intensity_loss(torch.from_numpy(pred), torch.from_numpy(mask)))
    single = float(adaptive_pixel_intensity_loss(torch.from_numpy(pred[1:2]), torch.from_numpy(mask[1:2])))
    commit = subprocess.run(["git", "-C", str(args.tracer), "rev-parse", "HEAD"], capture_output=True, text=True)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "api_loss.npz", pred=pred, mask=mask)
    values = {"tracer_commit": commit.stdout.strip(), "batch": batch, "second_alone": single}
    (args.out / "api_loss.json").write_text(json.dumps(values, indent=1) + "\n")


if __name__ == "__main__":
    main()
