"""Searchers against NAS-Bench-201's exact answers (issue 19), on the table shipped in
hwnas/space/tables/ (accuracies of all 15,625 cells, latencies measured on nine real devices).

For each algorithm, device, seed and query count: one search over the whole latency range (budget:
the device's highest latency), then
- the hypervolume of the queried cells' front (accuracy / 100 against latency normalised by the
  table's range, reference (0, 1.1)) as a ratio of the exact front's (all 15,625 cells);
- the regret under 3 budgets (the 25th, 50th and 75th latency percentile of the table): the best
  `*_val` accuracy of any cell under the budget minus that of the cell the search picks under it
  (`Archive.pick`, its most accurate queried cell under the budget); and the same in test accuracy
  (the best `*_test` of any cell under the budget minus the picked cell's `*_test`);
- the regret at the top (the most accurate cell's accuracy minus the best queried) and the part of
  the exact hypervolume missed at latencies above the most accurate cell's (`hv_lost_above`): the
  HV ratio with that one cell added to the queried ones is the sum of the two ratios;
- queries used and seconds.
Settings are tuned on `TUNED` devices only; the summary gives them and the rest (held out) apart,
and, per budget, how often the picked cell computes the same network as the best cell under it
(`NB201Space.functions`: the table trained every wiring of a network separately, so the best cell
under a budget may be one lucky copy of a network whose other copies score less). `--oracle`
prints what a search that knew every network's mean accuracy over its copies would reach.
PNAG's own protocol (`--pnag-protocol`): trained once per device and seed on 200 queries, then 10
budgets answered by inference from its cache (`pnag_protocol`).
Usage: python -m bench.nb201 [--algos random,evolution,...] [--devices pixel3,...] [--seeds 5]
       [--queries 50,100,200] [--metric cifar100_val] [--set KEY=VALUE] [--pnag-protocol] [--summary] [--oracle]
       [--out FILE]
Results go to bench/out/nb201.json or --out (rows keep runs of other settings); --summary only
prints them, from every bench/out/nb201*.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from hwnas.search import parse_budgets, search
from hwnas.search.pnag import load
from hwnas.space.nb201 import Benchmark, BenchmarkAccuracy, BenchmarkCosts

OUT = Path(__file__).parent / "out" / "nb201.json"
ALGOS = ("random", "evolution", "nsga2", "mosegnas", "natv2", "pnag")
TUNED = ("pixel3", "gold_6226", "titan_rtx_256", "fpga", "samsung_s7")  # the search defaults' tuning devices


def front_hv(accuracy: np.ndarray, latency: np.ndarray) -> float:
    """Hypervolume of (accuracy in [0, 1], latency in [0, 1]) against (0, 1.1), pymoo's HV."""
    from pymoo.indicators.hv import HV
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    points = np.column_stack([-accuracy, latency])
    front = points[NonDominatedSorting().do(points, only_non_dominated_front=True)]
    return float(HV(ref_point=np.array([0.0, 1.1]))(front))


def staircase(accuracy: np.ndarray, latency: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The best accuracy among cells of at most each latency of `at` (0 where there is none)."""
    order = np.argsort(latency, kind="stable")
    best = np.maximum.accumulate(accuracy[order])
    index = np.searchsorted(latency[order], at, side="right") - 1
    return np.where(index >= 0, best[np.maximum(index, 0)], 0.0)


def hv_lost_above(truth: dict, accuracy: np.ndarray, latency: np.ndarray) -> float:
    """The part of the exact hypervolume a front of (accuracy, latency), both normalised as in
    `front_hv`, misses at latencies above the most accurate cell's: its front is the area under the
    best-accuracy-within-latency staircase up to the reference 1.1, so this is the integral of the
    exact staircase minus the front's from there on (exact: both are constant between steps)."""
    steps = np.unique(np.concatenate([truth["lat"], latency, [truth["top"]]]))
    steps = steps[(steps >= truth["top"]) & (steps < 1.1)]
    widths = np.diff(np.append(steps, 1.1))
    gap = staircase(truth["acc"], truth["lat"], steps) - staircase(accuracy, latency, steps)
    return float(gap @ widths)


def exact(table: Benchmark, device: str, metric: str) -> dict:
    frame = table.frame
    latency = frame[f"latency_ms_{device}"].to_numpy(dtype=np.float64)
    lo, hi = latency.min(), latency.max()
    budgets = [float(np.percentile(latency, q)) for q in (25, 50, 75)]
    test = metric.replace("_val", "_test")
    val_acc, test_acc = frame[metric].to_numpy(np.float64), frame[test].to_numpy(np.float64)
    scaled = (latency - lo) / (hi - lo)
    return {
        "lo": lo,
        "hi": hi,
        "hv": front_hv(val_acc / 100, scaled),
        "acc": val_acc / 100,
        "lat": scaled,
        "top": float(scaled[np.argmax(val_acc)]),
        "best": float(val_acc.max()),
        "budgets": budgets,
        "best_val": [float(val_acc[latency <= b].max()) for b in budgets],
        "best_row": [int(np.flatnonzero(latency <= b)[np.argmax(val_acc[latency <= b])]) for b in budgets],
        "best_test": [float(test_acc[latency <= b].max()) for b in budgets],
    }


def one_run(
    table: Benchmark, device: str, metric: str, algo: str, queries: int, seed: int, truth: dict,
    settings: list[str] | None = None,
) -> dict:  # fmt: skip
    costs = BenchmarkCosts(table, device=device)
    accuracy = BenchmarkAccuracy(table, metric)
    loose = parse_budgets([f"{truth['hi'] * 1.0001:.6f}ms"])  # the whole range: the front, not one budget
    start = time.perf_counter()
    archive = search(table.space, accuracy=accuracy, costs=costs, budgets=loose, algorithm=algo,
                     evaluations=queries, seed=seed, settings=settings)  # fmt: skip
    seconds = time.perf_counter() - start
    x = np.array([table.space.encode(r.arch) for r in archive.records])
    val = table.column(metric, x)
    lat = table.column(f"latency_ms_{device}", x)
    test = table.column(metric.replace("_val", "_test"), x)
    scaled = (lat - truth["lo"]) / (truth["hi"] - truth["lo"])
    hv = front_hv(val / 100, scaled)
    regret_val, regret_test, same_network = [], [], []
    best_networks = table.space.functions(table.space.every_cell()[truth["best_row"]])
    for b, best_val, best_test, best in zip(truth["budgets"], truth["best_val"], truth["best_test"], best_networks,
                                            strict=True):  # fmt: skip
        ok = np.flatnonzero(lat <= b)
        if len(ok) == 0:
            regret_val.append(float("nan"))
            regret_test.append(float("nan"))
            same_network.append(False)
            continue
        pick = ok[np.argmax(val[ok])]  # Archive.pick: the most accurate queried cell under the budget
        regret_val.append(best_val - float(val[pick]))
        regret_test.append(best_test - float(test[pick]))
        same_network.append(table.space.functions(x[pick])[0] == best)
    return {
        "algo": algo, "device": device, "seed": seed, "queries": queries, "used": len(archive),
        "hv_ratio": hv / truth["hv"], "regret_val": regret_val, "regret_test": regret_test,
        "same_network": same_network, "regret_top": truth["best"] - float(val.max()),
        "hv_lost_above_top": hv_lost_above(truth, val / 100, scaled) / truth["hv"],
        "seconds": seconds, "settings": list(settings or []),
    }  # fmt: skip


PNAG_PERCENTILES = (10, 20, 25, 30, 40, 50, 60, 70, 75, 90)  # its 10 budgets, p25/p50/p75 among them


def pnag_protocol(table: Benchmark, device: str, metric: str, seed: int, queries: int = 200) -> dict:
    """PNAG as its paper means it: trained once on `queries` scored cells (and cached), then each of
    10 budgets (latency percentiles) answered by a new search that finds the cache: inference only,
    nothing scored. The share of raw (greedy) generator answers that meet their budget before any
    repair, the share of final answers that do, their regret, and seconds per answer."""
    import tempfile

    costs, accuracy = BenchmarkCosts(table, device=device), BenchmarkAccuracy(table, metric)
    frame = table.frame
    latency = frame[f"latency_ms_{device}"].to_numpy(np.float64)
    val, test = frame[metric].to_numpy(np.float64), frame[metric.replace("_val", "_test")].to_numpy(np.float64)
    budgets = [float(np.percentile(latency, q)) for q in PNAG_PERCENTILES]
    keys = ("raw_met", "met", "regret_val", "regret_test", "seconds", "inference", "evaluator_regret", "sampled_regret")
    rows: dict[str, list] = {key: [] for key in keys}
    with tempfile.TemporaryDirectory() as cache:

        def ask(limit: float):
            start = time.perf_counter()
            archive = search(table.space, accuracy=accuracy, costs=costs, budgets=parse_budgets([f"{limit:.6f}ms"]),
                             algorithm="pnag", evaluations=queries, seed=seed, options={"cache": cache})  # fmt: skip
            return archive, time.perf_counter() - start

        start = time.perf_counter()
        ask(budgets[len(budgets) // 2])  # the one training
        train_seconds = time.perf_counter() - start
        for limit in budgets:
            archive, seconds = ask(limit)
            assert archive.meta["pnag_cache"] == "reused", "a budget was not answered from the cache"
            answer = archive.meta["pnag_answers"][-1]
            row = table.space.code(table.space.encode(table.space.parse(answer["arch"]))[None])[0]
            under = latency <= limit
            rows["raw_met"].append(answer["raw_met"])
            rows["met"].append(bool(latency[row] <= limit))
            rows["regret_val"].append(float(val[under].max() - val[row]) if latency[row] <= limit else float("nan"))
            rows["regret_test"].append(float(test[under].max() - test[row]) if latency[row] <= limit else float("nan"))
            rows["seconds"].append(seconds)
            rows["inference"].append(float(archive.meta["pnag_seconds"][-1]))
            model = load(Path(archive.meta["pnag_cache_file"]), table.space, None)
            rows["evaluator_regret"].append(evaluator_regret(table, model, limit, latency, val))
            rows["sampled_regret"].append(sampled_regret(table, model, limit, latency, val, seed))
    return {"algo": "pnag-protocol", "device": device, "seed": seed, "queries": queries, "budgets": budgets,
            "train_seconds": train_seconds, **rows}  # fmt: skip


def evaluator_regret(table: Benchmark, model, limit: float, latency: np.ndarray, val: np.ndarray) -> float:
    """The regret of the cell PNAG's evaluator (`model`, the cached PNAG) ranks first among *all*
    cells under the budget: what a perfect generator for that evaluator would reach (a diagnosis,
    not an answer: it reads the whole table's latencies, no accuracies)."""
    under = np.flatnonzero(latency <= limit)
    x = table.space.every_cell()[under]
    return float(val[under].max() - val[under[int(np.argmax(model.score(x, limit)))]])


def sampled_regret(table: Benchmark, model, limit: float, latency: np.ndarray, val: np.ndarray, seed: int) -> float:
    """The regret of the answer without the evaluator's one-gene polishing (`generate(rounds=0)`):
    the evaluator's pick among the generator's own samples, what the generator alone contributes."""
    pick = model.generate(limit, lambda x: latency[table.space.code(x)], rounds=0, seed=seed)
    return float(val[latency <= limit].max() - val[table.space.code(pick[None])[0]])


def pnag_summary(rows: list[dict]) -> str:
    mine = [r for r in rows if r["algo"] == "pnag-protocol"]
    if not mine:
        return ""
    raw = np.mean([np.mean(r["raw_met"]) for r in mine])
    met = np.mean([np.mean(r["met"]) for r in mine])
    regret = np.nanmedian([np.nanmedian(r["regret_val"]) for r in mine])
    regret_test = np.nanmedian([np.nanmedian(r["regret_test"]) for r in mine])
    slowest = max(max(r["seconds"]) for r in mine)
    oracle = np.nanmedian([np.nanmedian(r["evaluator_regret"]) for r in mine])
    sampled = np.nanmedian([np.nanmedian(r.get("sampled_regret", [np.nan])) for r in mine])
    inference = max(max(r["inference"]) for r in mine)
    return (
        f"PNAG, trained once per device and seed on {mine[0]['queries']} queries, 10 budgets (latency percentiles "
        f"{', '.join(map(str, PNAG_PERCENTILES))}) answered from its cache, {len(mine)} trainings:\n"
        f"| raw answers meeting the budget | final answers meeting it | median regret val | median regret test | "
        f"without polishing (generator's samples only), regret | evaluator's own pick of all cells, regret | "
        f"slowest answer (search call) | slowest inference | training |\n"
        f"| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {raw:.0%} | {met:.0%} | {regret:.2f} | {regret_test:.2f} | {sampled:.2f} | {oracle:.2f} | {slowest:.2f} s "
        f"| {inference:.3f} s | {np.median([r['train_seconds'] for r in mine]):.1f} s |"
    )


def label(row: dict) -> str:
    """A run's algorithm and the settings it was given (`--set`), as the summary names it."""
    return " ".join([row["algo"], *row.get("settings", [])])


def summary(rows: list[dict], queries: int) -> str:
    lines = [
        f"median over devices and seeds at {queries} queries (regret in points of accuracy, budgets p25/p50/p75; "
        f"tuned on {', '.join(TUNED)}, the rest held out):",
        "| algorithm | devices | runs | HV ratio | regret val p25 / p50 / p75 | regret test p50 | p50 pick is the best "
        "cell's network | regret at the top | HV with the top cell added | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups = {"all": lambda d: True, "tuned": lambda d: d in TUNED, "held out": lambda d: d not in TUNED}
    labels = sorted(
        {label(r) for r in rows if r["algo"] in ALGOS}, key=lambda name: (ALGOS.index(name.split()[0]), name)
    )
    for algo in labels:
        for group, member in groups.items():
            mine = [r for r in rows if label(r) == algo and r["queries"] == queries and member(r["device"])]
            if not mine:
                continue
            hv = np.median([r["hv_ratio"] for r in mine])
            rv = [np.nanmedian([r["regret_val"][i] for r in mine]) for i in range(3)]
            rt = np.nanmedian([r["regret_test"][1] for r in mine])
            same = [r["same_network"][1] for r in mine if "same_network" in r]
            share = f"{np.mean(same):.0%}" if same else "-"
            sec = np.median([r["seconds"] for r in mine])
            top = [r for r in mine if "regret_top" in r]  # runs from before these were recorded have neither
            top_regret = f"{np.median([r['regret_top'] for r in top]):.2f}" if top else "-"
            with_top = f"{np.median([r['hv_ratio'] + r['hv_lost_above_top'] for r in top]):.4f}" if top else "-"
            lines.append(
                f"| {algo} | {group} | {len(mine)} | {hv:.4f} | {rv[0]:.2f} / {rv[1]:.2f} / {rv[2]:.2f} | {rt:.2f} "
                f"| {share} | {top_regret} | {with_top} | {sec:.1f} |"
            )
    return "\n".join(lines)


def network_oracle(table: Benchmark, metric: str) -> str:
    """What a search that knew every network's accuracy would reach on this table: per device, the
    front of (mean accuracy over a network's copies, each cell's latency), scored as the searches
    are (its cells' own accuracies), and the regret of the best network under the median budget and
    under PNAG's 10 budgets (`PNAG_PERCENTILES`)."""
    from collections import defaultdict

    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    frame = table.frame
    networks = table.space.functions(table.space.every_cell())
    copies: dict[str, list[int]] = defaultdict(list)
    for row, network in enumerate(networks):
        copies[network].append(row)
    val = frame[metric].to_numpy(np.float64)
    mean = np.array([val[copies[n]].mean() for n in networks])
    lines = [
        f"{len(copies)} networks among {len(frame)} cells; a search knowing each network's mean {metric}:",
        "| device | exact front's cells | this front's cells | HV ratio | regret p50 "
        "| median regret over PNAG's 10 budgets |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for device in table.devices:
        truth = exact(table, device, metric)
        lat = frame[f"latency_ms_{device}"].to_numpy(np.float64)
        front = NonDominatedSorting().do(np.column_stack([-mean, lat]), only_non_dominated_front=True)
        hv = front_hv(val[front] / 100, (lat[front] - truth["lo"]) / (truth["hi"] - truth["lo"])) / truth["hv"]
        regret = {}
        for q in (50, *PNAG_PERCENTILES):
            under = np.flatnonzero(lat <= np.percentile(lat, q))
            regret[q] = val[under].max() - val[under[np.argmax(mean[under])]]
        pnag = np.median([regret[q] for q in PNAG_PERCENTILES])
        exact_front = NonDominatedSorting().do(np.column_stack([-val, lat]), only_non_dominated_front=True)
        lines.append(f"| {device} | {len(exact_front)} | {len(front)} | {hv:.4f} | {regret[50]:.2f} | {pnag:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--devices", default="")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--queries", default="50,100,200")
    parser.add_argument("--metric", default="cifar100_val")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--pnag-protocol", action="store_true", help="PNAG trained once, 10 budgets by inference")
    parser.add_argument("--set", action="append", default=[], help="a searcher setting, KEY=VALUE (repeatable)")
    parser.add_argument("--oracle", action="store_true", help="what knowing each network's accuracy would reach")
    parser.add_argument("--out", type=Path, default=OUT, help="results file (runs in parallel each need one)")
    args = parser.parse_args()
    out = args.out
    saved = json.loads(out.read_text()) if out.exists() else {"rows": []}
    table = Benchmark.load()
    queries = [int(q) for q in args.queries.split(",")]
    if not args.summary:
        devices = args.devices.split(",") if args.devices else table.devices
        algos = args.algos.split(",")
        done = {(label(r), r["device"], r["seed"], r["queries"]) for r in saved["rows"]}
        for device in devices:
            for seed in range(args.seeds if args.pnag_protocol else 0):
                if ("pnag-protocol", device, seed, 200) in done:
                    continue
                saved["rows"].append(pnag_protocol(table, device, args.metric, seed))
                out.parent.mkdir(exist_ok=True)
                save(out, {**saved, "metric": args.metric})
                last = saved["rows"][-1]
                regret, slowest = np.nanmedian(last["regret_val"]), max(last["seconds"])
                line = f"raw met {np.mean(last['raw_met']):.0%}, median regret {regret:.2f}, slowest {slowest:.2f} s"
                print(f"{device} pnag protocol s{seed}: {line}", flush=True)
            if args.pnag_protocol:
                continue
            truth = exact(table, device, args.metric)
            for algo in algos:
                for q in queries:
                    for seed in range(args.seeds):
                        if (label({"algo": algo, "settings": args.set}), device, seed, q) in done:
                            continue
                        row = one_run(table, device, args.metric, algo, q, seed, truth, args.set or None)
                        saved["rows"].append(row)
                        out.parent.mkdir(exist_ok=True)
                        save(out, {**saved, "metric": args.metric})
                        line = f"HV {row['hv_ratio']:.4f} regret p50 {row['regret_val'][1]:.2f}"
                        print(f"{device} {algo} q{q} s{seed}: {line} ({row['seconds']:.1f} s)", flush=True)
    print(f"machine: {saved.get('machine', machine())}; metric {saved.get('metric', args.metric)}")
    if args.summary:  # every results file beside the default one: runs made in parallel (--out)
        saved = {"rows": [r for f in sorted(OUT.parent.glob("nb201*.json")) for r in json.loads(f.read_text())["rows"]]}
    for q in queries:
        print(summary(saved["rows"], q))
    print(pnag_summary(saved["rows"]))
    if args.oracle:
        print(network_oracle(table, args.metric))


if __name__ == "__main__":
    main()
