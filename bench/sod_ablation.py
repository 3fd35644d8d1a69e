"""FocusNet's Table 2 ablation (baseline, +CFEM, +AFE, +FOCUS) on synthetic SOD data, one CLI command per row.

Each row trains the same `mini` subnet (default: the largest) from scratch with one
`hwnas train selfkd --method baseline` command that differs only in the head switches, then scores
the held-out synthetic test split (its own seed: never trained on, never chosen on) with
PySODMetrics: MAE, weighted F, S-measure, mean E-measure, max F. Params and FLOPs are the analytic
counts of the inference graph (FOCUS counts both backbones). Training follows `--task sod`'s
defaults, FocusNet's recipe (Adam 1e-4, weight decay 1e-4, batch 16, flip/rotate/blur).
Usage: python -m bench.sod_ablation [--epochs 8] [--seeds 0,1,2] [--arch max]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.nn.checkpoint import load
from hwnas.space import SearchSpace
from hwnas.train.recipe import FOCUSNET

OUT = Path(__file__).parent / "out"
ROWS = [  # (row, head switches): FocusNet Table 2's upper section
    ("baseline (U-Net decoder)", ["--task", "sod", "--no-afe", "--no-cfem"]),
    ("+CFEM", ["--task", "sod", "--no-afe"]),
    ("+CFEM +AFE", ["--task", "sod"]),
    ("+CFEM +AFE +FOCUS", ["--task", "sod", "--focus"]),
]
METRICS = ("mae", "wfm", "sm", "em", "maxf")


def command(switches: list[str], arch: str, epochs: int, seed: int, out: Path, sizes: tuple[int, int]) -> list[str]:
    return [
        "hwnas", "train", "selfkd", "--space", "mini", *switches, "--method", "baseline", "--arch", arch,
        "--data", "synthetic", "--epochs", str(epochs), "--seed", str(seed),
        "--train-size", str(sizes[0]), "--val-size", str(sizes[1]), "--out", str(out), "--fresh",
    ]  # fmt: skip


def test_scores(checkpoint: Path) -> dict[str, float]:
    """The trained subnet's SOD metrics on the held-out test split."""
    from hwnas.data import load_data
    from hwnas.nn.checkpoint import load
    from hwnas.train.evaluation import evaluate
    from hwnas.train.task import make_task

    ckpt = load(checkpoint)
    model = ckpt.model()
    w, h = model.arch.resolution
    train, val = ckpt.data["data_size"]
    data = load_data(
        "synthetic", task="sod", size=(h, w), seed=ckpt.data["config"]["seed"], train_size=train, val_size=val
    )
    return evaluate(model, data.scored_on_test(), make_task(ckpt.task))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arch", default="max")
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--val-size", type=int, default=128)
    args = parser.parse_args()
    space = SearchSpace.load("mini")
    arch = space.max() if args.arch == "max" else space.min() if args.arch == "min" else space.load_arch(args.arch)
    folder = OUT / "sod_ablation"
    rows = []
    for index, (name, switches) in enumerate(ROWS):
        for seed in map(int, args.seeds.split(",")):
            path = folder / f"row{index}-seed{seed}.pt"
            cmd = command(switches, args.arch, args.epochs, seed, path, (args.train_size, args.val_size))
            print("$", " ".join(cmd), flush=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hwnas.cli", *cmd[1:]], check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            scores = test_scores(path)
            task = load(path).data["task"]
            rows.append(
                {
                    "row": name,
                    "command": " ".join(cmd),
                    "task": task,
                    "seed": seed,
                    **{m: scores[m] for m in METRICS},
                    "params_m": space.params(arch, task) / 1e6,
                    "mflops": space.flops(arch, task) / 1e6,
                    "train_s": seconds,
                }
            )
            print("  test: " + ", ".join(f"{m} {scores[m]:.4f}" for m in METRICS), flush=True)
    summary = []
    for name, _ in ROWS:
        mine = [r for r in rows if r["row"] == name]
        summary.append(
            {
                "row": name,
                "task": mine[0]["task"],
                **{m: float(np.mean([r[m] for r in mine])) for m in METRICS},
                **{f"{m}_sd": float(np.std([r[m] for r in mine])) for m in METRICS},
                "params_m": mine[0]["params_m"],
                "mflops": mine[0]["mflops"],
            }
        )
    result = {
        "machine": machine(),
        "evaluator": "PySODMetrics",
        "arch": str(arch),
        "epochs": args.epochs,
        "seeds": args.seeds,
        "recipe": {**vars(FOCUSNET), "augment": list(FOCUSNET.augment)},  # the --task sod defaults
        "rows": rows,
        "summary": summary,
    }
    OUT.mkdir(exist_ok=True)
    save(OUT / "sod_ablation.json", result)
    print(f"machine: {machine()}; {args.epochs} epochs, seeds {args.seeds}, test split, PySODMetrics")
    print(f"{'row':<22} {'MAE':>14} {'wF':>14} {'Sm':>14} {'Em':>7} {'maxF':>7} {'params':>7} {'MFLOPs':>7}")
    for s in summary:
        cells = [f"{s[m]:.4f}±{s[m + '_sd']:.4f}" for m in ("mae", "wfm", "sm")]
        print(
            f"{s['row']:<22} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {s['em']:>7.4f} {s['maxf']:>7.4f} "
            f"{s['params_m']:>6.3f}M {s['mflops']:>7.1f}"
        )


if __name__ == "__main__":
    main()
