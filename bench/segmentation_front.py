"""MoSegNAS's comparison on synthetic segmentation: mIoU against latency of each searcher's front.

1. A `mini` segmentation supernet (4 classes: background, disk, box, bar) trained on procedural
   scenes with hwnas's CLI (`hwnas train supernet --task segmentation`, MoSegNAS's recipe: SGD 0.01,
   batch 8, flips; sandwich rule, inplace KD), cached as bench/out/seg-mini-supernet.pt.
2. Its `cpu` (ONNX Runtime) latency table at every mini resolution, 4 classes
   (`hwnas profile --task segmentation --classes 4`), calibrated per resolution against end-to-end
   timings (`hwnas lut validate --samples 30`), cached as bench/out/cpu-mini-seg.parquet.
3. Each searcher (the ones every task uses: random, nsga2, mosegnas, natv2) runs with the same
   number of supernet evaluations and seeds under one budget: halfway between the smallest and the
   largest subnet's predicted latency. Their scores are the supernet's validation mIoU (BN
   re-estimated per subnet), as the search ranks them.
4. Every subnet on a searcher's final front (its non-dominated archived subnets under the budget)
   is then scored on the held-out test split at the labels' resolution (one confusion matrix over
   the split, as Cityscapes' evaluation) and measured end to end on this CPU (ONNX Runtime,
   interleaved rounds), beside the table's prediction.

Prints per searcher: the front's hypervolume (validation mIoU vs predicted latency, the search's
reference point), the chosen subnet's validation and test mIoU, predicted and measured latency;
then every front point. JSON in bench/out/segmentation_front.json, plot in
bench/out/segmentation_front.png.
Usage: python -m bench.segmentation_front [--epochs 8] [--evals 32] [--seeds 2] [--algos random,nsga2,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save

OUT = Path(__file__).parent / "out"
ALGOS = ("random", "nsga2", "mosegnas", "natv2")
CLASSES = 4
TRAIN_IMAGES = 512


def _hwnas(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hwnas.cli", *args], check=True, stdout=subprocess.DEVNULL)


def _prepare(epochs: int) -> tuple[Path, Path]:
    ckpt, lut = OUT / "seg-mini-supernet.pt", OUT / "cpu-mini-seg.parquet"
    OUT.mkdir(exist_ok=True)
    if not ckpt.exists():
        start = time.perf_counter()
        _hwnas(
            "train", "supernet", "--space", "mini", "--task", "segmentation", "--data", "synthetic", "--epochs",
            str(epochs), "--train-size", str(TRAIN_IMAGES), "--val-size", "128", "--out", str(ckpt),
        )  # fmt: skip
        print(f"trained {ckpt} ({epochs} epochs) in {time.perf_counter() - start:.0f} s", flush=True)
    if not lut.exists():
        start = time.perf_counter()
        _hwnas(
            "profile", "--device", "cpu", "--space", "mini", "--task", "segmentation", "--classes", str(CLASSES),
            "--rounds", "2", "--out", str(lut),
        )  # fmt: skip
        _hwnas("lut", "validate", "--device", "cpu", "--space", "mini", "--lut", str(lut), "--samples", "30")
        print(f"profiled and calibrated {lut} in {time.perf_counter() - start:.0f} s", flush=True)
    return ckpt, lut


def _measure(space, archs, rounds: int) -> np.ndarray:
    """End-to-end ms of each subnet on this CPU (ONNX Runtime, `rounds` interleaved rounds, median)."""
    from hwnas.hardware.backends import Protocol
    from hwnas.hardware.device import load_device
    from hwnas.hardware.measurer import LocalMeasurer, aggregate

    device = load_device("cpu")
    per_round = LocalMeasurer(device).archs(
        space, archs, "segmentation", num_classes=CLASSES, rounds=rounds, statistic="median", protocol=Protocol()
    )
    return aggregate(per_round, "median")


def run(epochs: int, evals: int, seeds: int, algos: tuple[str, ...], rounds: int) -> dict:
    from hwnas.data import load_data
    from hwnas.hardware.table import LatencyTable
    from hwnas.search import Archive, Costs, parse_budgets, search
    from hwnas.search.accuracy import SupernetEvaluator
    from hwnas.train.evaluation import evaluate

    ckpt, lut = _prepare(epochs)
    evaluator = SupernetEvaluator(ckpt, LatencyTable.load(lut).space)
    space = evaluator.space
    table = LatencyTable.load(lut, space)
    costs = Costs(space, task="segmentation", num_classes=CLASSES, table=table)
    low, high = table.predict(space.min()), table.predict(space.max())
    budgets = parse_budgets([f"{(low + high) / 2:.4f}ms"])
    w, h = space.max().resolution
    test = load_data("synthetic", task="segmentation", size=(h, w), train_size=TRAIN_IMAGES, val_size=128)
    test = test.scored_on_test()  # 128 held-out scenes of their own seed; BN from the training split
    runs, points = [], {}
    for algo in algos:
        for seed in range(seeds):
            start = time.perf_counter()
            archive = search(
                space, accuracy=evaluator, costs=costs, budgets=budgets, algorithm=algo, evaluations=evals, seed=seed
            )
            seconds = time.perf_counter() - start
            feasible = Archive(space=space, objectives=archive.objectives, records=archive.feasible(budgets))
            front = feasible.front()
            chosen = archive.pick(budgets)
            runs.append(
                {
                    "algo": algo,
                    "seed": seed,
                    "evaluated": len(archive),
                    "seconds": seconds,
                    "hv": feasible.hypervolume(archive.meta["reference"]),
                    "front": [str(r.arch) for r in front],
                    "chosen": str(chosen.arch),
                    "chosen_val_miou": chosen.values["accuracy"],
                    "chosen_predicted_ms": chosen.values["latency"],
                }  # fmt: skip
            )
            for r in front:
                points.setdefault(str(r.arch), {"arch": r.arch, "val_miou": r.values["accuracy"],
                                                "predicted_ms": r.values["latency"], "algos": set()})  # fmt: skip
                points[str(r.arch)]["algos"].add(algo)
            print(f"{algo:9s} seed {seed}: HV {runs[-1]['hv']:.4f}, {len(front)} on the front, chosen val mIoU "
                  f"{chosen.values['accuracy']:.4f} at {chosen.values['latency']:.3f} ms, {seconds:.0f} s",
                  flush=True)  # fmt: skip
    archs = [p["arch"] for p in points.values()]
    print(f"scoring {len(archs)} front subnets on the test split and measuring them end to end", flush=True)
    measured = _measure(space, archs, rounds)
    for p, ms in zip(points.values(), measured, strict=True):
        scores = evaluate(evaluator.model, test, evaluator.task, arch=p["arch"], original=True)
        p.update(test_miou=scores["miou"], test_pixel_acc=scores["pixel_acc"], measured_ms=float(ms))
    for r in runs:
        r["chosen_test_miou"] = points[r["chosen"]]["test_miou"] if r["chosen"] in points else None
        r["chosen_measured_ms"] = points[r["chosen"]]["measured_ms"] if r["chosen"] in points else None
    return {
        "machine": machine(), "epochs": epochs, "evals": evals, "seeds": seeds, "budget": budgets[0].text,
        "range_ms": [low, high], "runs": runs,
        "points": [{**{k: v for k, v in p.items() if k not in ("arch", "algos")}, "arch": key,
                    "algos": sorted(p["algos"])} for key, p in points.items()],
    }  # fmt: skip


def _print(result: dict) -> None:
    print(f"\n{result['machine']}")
    print(f"mini segmentation supernet, {result['epochs']} epochs on {TRAIN_IMAGES} synthetic scenes; budget "
          f"{result['budget']} (predicted range {result['range_ms'][0]:.3f}..{result['range_ms'][1]:.3f} ms); "
          f"{result['evals']} supernet evaluations per search, {result['seeds']} seed(s)")  # fmt: skip
    print("\n| searcher | HV (median) | chosen: val mIoU | test mIoU | predicted ms | measured ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    by_algo: dict[str, list] = {}
    for r in result["runs"]:
        by_algo.setdefault(r["algo"], []).append(r)
    for algo, rows in by_algo.items():

        def med(key: str, rows: list = rows) -> float:
            return float(np.median([r[key] for r in rows if r[key] is not None]))

        print(f"| {algo} | {med('hv'):.4f} | {med('chosen_val_miou'):.4f} | {med('chosen_test_miou'):.4f} | "
              f"{med('chosen_predicted_ms'):.3f} | {med('chosen_measured_ms'):.3f} |")  # fmt: skip
    print("\n| front subnet | found by | val mIoU | test mIoU | pixel acc | predicted ms | measured ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in sorted(result["points"], key=lambda p: p["predicted_ms"]):
        print(f"| {p['arch']} | {', '.join(p['algos'])} | {p['val_miou']:.4f} | {p['test_miou']:.4f} | "
              f"{p['test_pixel_acc']:.4f} | {p['predicted_ms']:.3f} | {p['measured_ms']:.3f} |")  # fmt: skip
    pred = np.array([p["predicted_ms"] for p in result["points"]])
    meas = np.array([p["measured_ms"] for p in result["points"]])
    print(f"\nfront subnets: predicted / measured latency median ratio {np.median(pred / meas):.3f}")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in dict.fromkeys(r["algo"] for r in result["runs"]):
        pts = [p for p in result["points"] if algo in p["algos"]]
        ax.scatter([p["measured_ms"] for p in pts], [p["test_miou"] for p in pts], label=algo, alpha=0.7)
    ax.axvline(float(result["budget"].removesuffix("ms")), color="grey", linestyle="--", label="budget (predicted)")
    ax.set_xlabel("measured latency on this CPU (ms, ONNX Runtime)")
    ax.set_ylabel("test mIoU (synthetic)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--evals", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--summary", action="store_true", help="only print bench/out/segmentation_front.json")
    args = parser.parse_args()
    path = OUT / "segmentation_front.json"
    if args.summary:
        _print(json.loads(path.read_text()))
        return
    result = run(args.epochs, args.evals, args.seeds, tuple(args.algos.split(",")), args.rounds)
    save(path, result)
    _plot(result, OUT / "segmentation_front.png")
    _print(result)


if __name__ == "__main__":
    main()
