"""Which accuracy predictor finds the best NAS-Bench-201 cells under a budget (issue 37, point 2).

Per seed: each predictor (and the mean rank of some of them) is fitted on N random cells' accuracy,
then asked about every cell. Reported: Kendall tau over all 15,625 cells, and per device the regret
at the median latency budget of the best cell among the N training cells and the top k predicted
cells under the budget (k = 5, 10): what a search that spends k more queries on the predictor's
first picks would reach; and that of the first predicted cell alone: an answer given without
scoring anything more, as PNAG's. Medians over the nine devices and the seeds.
Usage: python -m bench.surrogates [--samples 100] [--seeds 3] [--metric cifar100_val] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata

from bench.common import machine, save
from hwnas.search.predictors import make_predictor
from hwnas.space.nb201 import Benchmark

OUT = Path(__file__).parent / "out" / "surrogates.json"
SINGLE = ("ranknet", "lgbm", "gp", "svr", "ridge", "knn")
MEANS = (("ranknet", "lgbm"), ("ranknet", "gp"), ("ranknet", "lgbm", "gp"))


def run(table: Benchmark, samples: int, seeds: int, metric: str) -> list[dict]:
    frame = table.frame
    x = table.space.every_cell()
    val = frame[metric].to_numpy(np.float64)
    rows = []
    for seed in range(seeds):
        train = np.random.default_rng(seed).choice(len(x), samples, replace=False)
        ranks, seconds = {}, {}
        for name in SINGLE:
            start = time.perf_counter()
            model = make_predictor(name, table.space, seed=seed).fit(x[train], val[train] / 100)
            ranks[name] = rankdata(model.predict(x)) / len(x)
            seconds[name] = time.perf_counter() - start
        for members in [(name,) for name in SINGLE] + list(MEANS):
            score = np.mean([ranks[m] for m in members], axis=0)
            row = {
                "predictor": "+".join(members),
                "seed": seed,
                "samples": samples,
                "tau": float(kendalltau(score, val).statistic),
                "seconds": sum(seconds[m] for m in members),
            }
            row["regret_first"] = [topk_regret(table, device, score, val, None, 1) for device in table.devices]
            for k in (5, 10):
                row[f"regret_top{k}"] = [topk_regret(table, device, score, val, train, k) for device in table.devices]
            rows.append(row)
    return rows


def topk_regret(
    table: Benchmark, device: str, score: np.ndarray, val: np.ndarray, train: np.ndarray | None, k: int
) -> float:
    """Regret at the median budget of the best of the top `k` predicted cells and `train`'s."""
    latency = table.frame[f"latency_ms_{device}"].to_numpy(np.float64)
    under = np.flatnonzero(latency <= np.percentile(latency, 50))
    picks = under[np.argsort(-score[under], kind="stable")[:k]]
    seen = picks if train is None else np.union1d(np.intersect1d(train, under), picks)
    return float(val[under].max() - val[seen].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--metric", default="cifar100_val")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = run(Benchmark.load(), args.samples, args.seeds, args.metric)
    save(args.out, {"rows": rows, "metric": args.metric})
    print(f"machine: {machine()}; {args.samples} random {args.metric} cells, {args.seeds} seeds")
    print(
        "| predictor | Kendall tau | regret p50: the first predicted cell alone; training cells + top 5 / top 10 "
        "predicted | fit seconds |"
    )
    print("| --- | --- | --- | --- |")
    for name in dict.fromkeys(r["predictor"] for r in rows):
        mine = [r for r in rows if r["predictor"] == name]
        tau = np.mean([r["tau"] for r in mine])
        first = np.median([v for r in mine for v in r["regret_first"]])
        top5, top10 = (np.median([v for r in mine for v in r[f"regret_top{k}"]]) for k in (5, 10))
        seconds = np.mean([r["seconds"] for r in mine])
        print(f"| {name} | {tau:.3f} | {first:.2f}; {top5:.2f} / {top10:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
