"""Self-KD vs the baseline and the comparison methods of SalNAS Table 6, on one `mini` subnet.

Issue targets: Self-KD costs at most 1.1x the baseline's training time per epoch (same subnet,
same data; SalNAS Table 6 reports 1.0-1.2x), and on the synthetic saliency set it reaches a higher
validation CC than the baseline over >= 3 seeds (mean and spread reported either way).

For each seed the methods take turns epoch by epoch (each resumes its checkpoint, which is exact),
so the time ratios compare epochs run seconds apart on this drifting machine. Training seconds
exclude validation (identical for all methods). Self-KD has no teacher in epoch 1 (alpha = 1), so
its cost is reported over epochs 2+.
Usage: python -m bench.selfkd [--arch min] [--epochs 20] [--seeds 0,1,2] [--methods baseline,selfkd,pkd,pskd]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import machine, save
from hwnas.data import load_data
from hwnas.space import SearchSpace
from hwnas.train.task import make_task
from hwnas.train.trainer import TrainConfig, fit, initial_subnet, teacher_dtype

OUT = Path(__file__).parent / "out"


def train_interleaved(space, arch, data, methods: list[str], seed: int, epochs: int, folder: Path) -> list[dict]:
    """Train every method for `epochs`, one epoch of each in turn (each call resumes its checkpoint,
    which is exact), so that the machine's drift over minutes hits all methods alike."""
    histories = {}
    for epoch in range(1, epochs + 1):
        for method in methods:
            model = initial_subnet(space, arch, task="saliency", num_classes=1, seed=seed, init=None)
            config = TrainConfig(epochs=epochs, method=method, seed=seed)
            result = fit(
                model,
                space=space,
                data=data,
                task=make_task("saliency"),
                config=config,
                out=folder / f"{method}-{seed}.pt",
                resume=epoch > 1,
                until=epoch,
            )
            histories[method] = result.history
    return [
        {
            "method": method,
            "seed": seed,
            "cc": history[-1]["val"]["subnet"]["cc"],
            "best_cc": max(row["val"]["subnet"]["cc"] for row in history),
            "seconds": [row["seconds"] for row in history],
        }
        for method, history in histories.items()
    ]


def summarise(runs: list[dict], methods: list[str]) -> list[dict]:
    base = {r["seed"]: r for r in runs if r["method"] == "baseline"}
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        ratios = [np.median(np.array(r["seconds"][1:]) / np.array(base[r["seed"]]["seconds"][1:])) for r in mine]
        cc = np.array([r["cc"] for r in mine])
        rows.append(
            {
                "method": method,
                "cc_mean": float(cc.mean()),
                "cc_std": float(cc.std(ddof=1)) if len(cc) > 1 else 0.0,
                "cc_min": float(cc.min()),
                "cc_max": float(cc.max()),
                "beats_baseline": sum(r["cc"] > base[r["seed"]]["cc"] for r in mine),
                "seeds": len(mine),
                "time_ratio": float(np.median(ratios)),
                "epoch_s": float(np.mean([np.mean(r["seconds"][1:]) for r in mine])),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="min", help="min or max of the mini space")
    parser.add_argument("--epochs", type=int, default=20, help="SalNAS trains 20 epochs with T_0 = 10")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="baseline,selfkd,pkd,pskd")
    args = parser.parse_args()
    torch.set_num_threads(2)
    space = SearchSpace.load("mini")
    arch = space.min() if args.arch == "min" else space.max()
    w, h = arch.resolution
    methods = args.methods.split(",")
    if "baseline" not in methods:
        methods.insert(0, "baseline")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            data = load_data("synthetic", task="saliency", size=(h, w), seed=seed)
            for run in train_interleaved(space, arch, data, methods, seed, args.epochs, Path(tmp)):
                runs.append(run)
                print(f"seed {seed} {run['method']:8s} CC {run['cc']:.4f}", flush=True)
    rows = summarise(runs, methods)
    dtype = str(teacher_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    print(f"\nmachine: {machine()}")
    print(
        f"subnet: mini {args.arch} ({arch.resolution[0]}x{arch.resolution[1]}), synthetic saliency 512/128, "
        f"{args.epochs} epochs, batch 32, seeds {args.seeds}; teacher tables (selfkd, pskd) in "
        f"{dtype} (teacher_precision auto)"
    )
    print(
        f"{'method':9s} {'val CC mean':>11s} {'std':>7s} {'min':>7s} {'max':>7s} {'> baseline':>10s} "
        f"{'s/epoch':>8s} {'time vs baseline (epochs 2+)':>29s}"
    )
    for r in rows:
        print(
            f"{r['method']:9s} {r['cc_mean']:11.4f} {r['cc_std']:7.4f} {r['cc_min']:7.4f} {r['cc_max']:7.4f} "
            f"{r['beats_baseline']:>5d}/{r['seeds']:<4d} {r['epoch_s']:8.2f} {r['time_ratio']:28.2f}x"
        )
    OUT.mkdir(exist_ok=True)
    save(OUT / "selfkd.json", {"args": vars(args), "teacher_dtype": dtype, "runs": runs, "summary": rows})


if __name__ == "__main__":
    main()
