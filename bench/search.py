"""Search speed and quality (issue targets: a search with a built table and a fitted predictor in
under 10 s on `alphanet`; at equal supernet evaluations `mosegnas` reaches a hypervolume at least
that of `random` and `nsga2` over 5 seeds (medians); NSGA-II on the surrogate problem reaches >= 99%
of the hypervolume of a dense reference front of 100k random archs scored by the same surrogates).

Part A (`alphanet`, the cpu table from bench/out/cpu-alphanet.parquet, built by bench.lut_fidelity):
there is no trained alphanet supernet on this machine, so RankNet is fitted on 100 archs labelled
by a SYNTHETIC accuracy (normalised log-FLOPs plus noise); the labels only matter for the quality
of the front, not for the timing or the dense-reference comparison, which use the same surrogates.
Part B (`mini`): a real cpu table and a real supernet trained 3 epochs on synthetic saliency data
(both cached under bench/out/), searched at 32x32 by each algorithm with the same number of
supernet evaluations; the budget is 40% of the way from the smallest to the largest subnet.
Usage: python -m bench.search [--part a|b|ab] [--seeds 5] [--evals 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine
from hwnas.lut import LatencyTable
from hwnas.search import Archive, Costs, Objective, parse_budgets, reference_point, search
from hwnas.search.evaluator import SupernetEvaluator
from hwnas.search.mosegnas import PredictedAccuracy
from hwnas.search.nsga import ArchProblem, nsga2
from hwnas.search.predictors import RankNet
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"


def part_a() -> dict:
    space = SearchSpace.load("alphanet")
    table = LatencyTable.load(OUT / "cpu-alphanet.parquet", space)
    costs = Costs(space, task="saliency", table=table)
    rng = np.random.default_rng(0)
    _, xu = space.bounds()
    x = rng.integers(0, xu + 1, size=(100, len(xu)))
    flops = np.log(costs("flops", x))
    labels = 0.6 + 0.2 * (flops - flops.min()) / np.ptp(flops) + rng.normal(0, 0.01, len(x))  # SYNTHETIC
    start = time.perf_counter()
    model = RankNet(space).fit(x, labels)
    fit_s = time.perf_counter() - start
    accuracy = PredictedAccuracy(model)
    objectives = [Objective("accuracy", maximise=True), Objective("latency")]
    low, high = table.predict(space.min()), table.predict(space.max())
    budgets = parse_budgets([f"{(low + high) / 2:.3f}ms"])
    archive = Archive(space=space, objectives=objectives)
    problem = ArchProblem(archive=archive, accuracy=accuracy, costs=costs, budgets=budgets, record=True)
    start = time.perf_counter()
    nsga2(problem, evaluations=100 * 100, pop_size=100, seed=0)
    search_s = time.perf_counter() - start
    reference = reference_point(space, costs, ["latency"], None)
    dense = Archive(space=space, objectives=objectives)
    xd = np.unique(rng.integers(0, xu + 1, size=(100_000, len(xu))), axis=0)
    values = {"accuracy": accuracy.many(xd), "latency": costs("latency", xd)}
    ok = values["latency"] <= budgets[0].limit
    front_rows = _front(values, ok)
    for i in front_rows:
        dense.add(space.decode(xd[i]), {k: v[i] for k, v in values.items()}, "predictor")
    feasible = Archive(space=space, objectives=objectives, records=archive.feasible(budgets))
    return {
        "fit_s": fit_s,
        "search_s": search_s,
        "archs_scored": len(archive),
        "hv_nsga2": feasible.hypervolume(reference),
        "hv_dense": dense.hypervolume(reference),
        "dense_n": int(ok.sum()),
    }


def _front(values: dict, ok: np.ndarray) -> np.ndarray:
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    idx = np.flatnonzero(ok)
    f = np.column_stack([-values["accuracy"][idx], values["latency"][idx]])
    return idx[NonDominatedSorting().do(f, only_non_dominated_front=True)]


def _hwnas(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hwnas.cli", *args], check=True, stdout=subprocess.DEVNULL)


def part_b(seeds: int, evals: int) -> dict:
    space = SearchSpace.load("mini")
    lut, ckpt = OUT / "cpu-mini.parquet", OUT / "mini-supernet.pt"
    if not lut.exists():
        _hwnas("profile", "--device", "cpu", "--space", "mini", "--rounds", "2", "--out", str(lut))
    if not ckpt.exists():
        _hwnas("train", "supernet", "--space", "mini", "--epochs", "3", "--out", str(ckpt))
    table = LatencyTable.load(lut, space)
    costs = Costs(space, task="saliency", table=table)
    evaluator = SupernetEvaluator(ckpt, space)
    at32 = [space.decode(np.r_[0, space.encode(a)[1:]]) for a in (space.min(), space.max())]
    low, high = table.predict(at32[0]), table.predict(at32[1])
    budgets = parse_budgets([f"{low + 0.4 * (high - low):.4f}ms"])
    rows: dict[str, list] = {}
    for algo in ("random", "evolution", "nsga2", "mosegnas"):
        for seed in range(seeds):
            start = time.perf_counter()
            archive = search(
                space,
                accuracy=evaluator,
                costs=costs,
                budgets=budgets,
                algorithm=algo,
                evaluations=evals,
                seed=seed,
                allowed_resolutions=[0],
            )
            feasible = Archive(space=space, objectives=archive.objectives, records=archive.feasible(budgets))
            rows.setdefault(algo, []).append(
                {
                    "seed": seed,
                    "hv": archive.meta["hypervolume"],
                    "hv_feasible": feasible.hypervolume(archive.meta["reference"]),
                    "best_cc": archive.pick(budgets).values["accuracy"],
                    "evaluated": len(archive),
                    "seconds": time.perf_counter() - start,
                    "taus": [g["predictor_tau"] for g in archive.meta.get("generations", [])],
                }
            )
            print(
                f"{algo:9s} seed {seed}: HV {rows[algo][-1]['hv']:.4f}, best CC under budget "
                f"{rows[algo][-1]['best_cc']:.4f}, {len(archive)} evaluated",
                flush=True,
            )
    return {"budget": budgets[0].text, "evals": evals, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="ab")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--evals", type=int, default=32)
    args = parser.parse_args()
    previous = OUT / "search.json"  # a run of one part keeps the other part's figures
    report = {**(json.loads(previous.read_text()) if previous.exists() else {}), "machine": machine()}
    print(f"machine: {machine()}")
    if "a" in args.part:
        a = part_a()
        report["alphanet"] = a
        print(
            f"alphanet: RankNet fit on 100 archs {a['fit_s']:.1f} s; NSGA-II on (predictor, table) "
            f"{a['archs_scored']} archs in {a['search_s']:.1f} s"
        )
        print(
            f"alphanet: hypervolume NSGA-II {a['hv_nsga2']:.5f} vs dense reference ({a['dense_n']} feasible of "
            f"100k random) {a['hv_dense']:.5f} = {a['hv_nsga2'] / a['hv_dense']:.1%}"
        )
    if "b" in args.part:
        b = part_b(args.seeds, args.evals)
        report["mini"] = b
        print(f"\nmini, budget {b['budget']}, {b['evals']} supernet evaluations each, {args.seeds} seeds (medians):")
        print(
            f"{'algorithm':10s} {'HV':>8s} {'HV feasible':>12s} {'best CC':>8s} {'seconds':>8s} {'predictor tau':>14s}"
        )
        for algo, runs in b["runs"].items():
            med = {k: float(np.median([r[k] for r in runs])) for k in ("hv", "hv_feasible", "best_cc", "seconds")}
            taus = [t for r in runs for t in r["taus"] if t == t]
            tau = f"{np.median(taus):14.3f}" if taus else f"{'-':>14s}"
            print(
                f"{algo:10s} {med['hv']:8.4f} {med['hv_feasible']:12.4f} {med['best_cc']:8.4f} "
                f"{med['seconds']:8.1f} {tau}"
            )
    OUT.mkdir(exist_ok=True)
    (OUT / "search.json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
