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
Part C (PNAG, issue 9 targets): on the same mini table and supernet, PNAG learns from 64 scored
archs, then answers 20 budgets spread over the table's range by inference: the share of generated
archs that meet their budget (target >= 95%), the time per answer (target < 1 s) and the supernet CC
gap to the best of the 64 scored archs under each budget.
Usage: python -m bench.search [--part a|b|c|abc] [--seeds 5] [--evals 32] [--algos random,...]
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
from hwnas.hardware.table import LatencyTable
from hwnas.search import Archive, Costs, Objective, parse_budgets, reference_point, search
from hwnas.search.accuracy import SupernetEvaluator
from hwnas.search.mosegnas import PredictedAccuracy
from hwnas.search.nsga import Nsga2Search
from hwnas.search.predictors import RankNet
from hwnas.search.problem import ArchProblem
from hwnas.search.searchers import Termination
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
    Nsga2Search(pop_size=100).solve(problem, Termination(100 * 100), seed=0)
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


ALGOS = ("random", "evolution", "nsga2", "mosegnas", "natv2", "pnag")


def part_b(seeds: int, evals: int, algos: tuple[str, ...] = ALGOS) -> dict:
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
    for algo in algos:
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


def part_c(scored: int = 64, n_budgets: int = 20) -> dict:
    from hwnas.search.pnag import load
    from hwnas.search.problem import ArchRepair

    space = SearchSpace.load("mini")
    table = LatencyTable.load(OUT / "cpu-mini.parquet", space)
    costs = Costs(space, task="saliency", table=table)
    evaluator = SupernetEvaluator(OUT / "mini-supernet.pt", space)
    repair = ArchRepair(space, [0])
    ends = repair._do(None, np.array([space.encode(space.min()), space.encode(space.max())]))
    low, high = costs("latency", ends)
    cache = OUT / "pnag-mini.pt"
    cache.unlink(missing_ok=True)
    start = time.perf_counter()
    archive = search(
        space,
        accuracy=evaluator,
        costs=costs,
        budgets=parse_budgets([f"{(low + high) / 2:.4f}ms"]),
        algorithm="pnag",
        evaluations=scored + 1,
        seed=0,
        allowed_resolutions=[0],
        options={"cache": cache},
    )
    train_s = time.perf_counter() - start
    model = load(cache, space, None)
    cost = lambda x: costs("latency", repair._do(None, np.asarray(x)))  # noqa: E731
    rows = []
    for budget in np.linspace(low, high, n_budgets + 2)[1:-1]:
        start = time.perf_counter()
        x = repair._do(None, model.generate(float(budget), cost)[None])[0]
        seconds = time.perf_counter() - start
        latency = float(cost(x[None])[0])
        cc = evaluator(space.decode(x))
        under = [r.values["accuracy"] for r in archive.records[:scored] if r.values["latency"] <= budget]
        rows.append(
            {
                "budget_ms": float(budget),
                "latency_ms": latency,
                "meets": latency <= budget,
                "seconds": seconds,
                "cc": cc,
                "best_scored_cc": max(under) if under else None,
            }
        )
    return {"scored": scored, "train_s": train_s, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="abc")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--evals", type=int, default=32)
    parser.add_argument("--algos", default=",".join(ALGOS), help="part B's algorithms (others' rows are kept)")
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
        b = part_b(args.seeds, args.evals, tuple(args.algos.split(",")))
        kept = report.get("mini", {}).get("runs", {}) if report.get("mini", {}).get("budget") == b["budget"] else {}
        b["runs"] = {**kept, **b["runs"]}
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
    if "c" in args.part:
        c = part_c()
        report["pnag"] = c
        meets = [r["meets"] for r in c["rows"]]
        gaps = [r["best_scored_cc"] - r["cc"] for r in c["rows"] if r["best_scored_cc"] is not None]
        print(
            f"\npnag: trained on {c['scored']} scored archs in {c['train_s']:.1f} s; {len(meets)} budgets: "
            f"{np.mean(meets):.0%} met, answer time median {np.median([r['seconds'] for r in c['rows']]):.3f} s "
            f"(max {max(r['seconds'] for r in c['rows']):.3f} s), CC gap to the best scored arch under the budget "
            f"median {np.median(gaps):+.4f} (max {max(gaps):+.4f})"
        )
        for r in c["rows"]:
            best = f"{r['best_scored_cc']:.4f}" if r["best_scored_cc"] is not None else "-"
            print(
                f"  budget {r['budget_ms']:.3f} ms: generated {r['latency_ms']:.3f} ms "
                f"{'ok' if r['meets'] else 'OVER'}, CC {r['cc']:.4f}, best scored {best}, {r['seconds']:.3f} s"
            )
    OUT.mkdir(exist_ok=True)
    save(OUT / "search.json", json.loads(json.dumps(report, default=float)))


if __name__ == "__main__":
    main()
