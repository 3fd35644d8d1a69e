"""MoSegNAS's surrogate-assisted search (Lu et al., Algorithm 1) with its hierarchical pre-screening
(Algorithm 4, Eq. 8).

Start from an archive of archs evaluated on the supernet; then, per generation: fit the accuracy
predictor on the archive, run NSGA-II on (predicted accuracy, table latency) under the budgets,
pick K of its final population for supernet evaluation — first a subset whose latencies, together
with the archive's non-dominated ones, are closest to uniform by the Kolmogorov-Smirnov statistic
(a binary GA, pymoo), then fill by predicted accuracy — and archive them. Each generation logs the
hypervolume and the predictor's Kendall tau on the newly evaluated archs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwnas.search.archive import Archive
from hwnas.search.predictors import make_predictor
from hwnas.search.problem import ArchProblem, Progress, initial_design, new_candidates
from hwnas.search.searchers import Searcher, Termination


@dataclass
class PredictedAccuracy:
    predictor: object
    metric: str = "predicted"
    source: str = "predictor"

    def many(self, x: np.ndarray) -> np.ndarray:
        return self.predictor.predict(np.asarray(x, dtype=np.int64))


def surrogate_search(
    problem: ArchProblem,
    model,
    *,
    pop: int,
    gens: int,
    seed: int,
    nsga3_above_two: bool = False,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """The final population of a pymoo search on (predicted accuracy, true costs) under the budgets:
    NSGA-II, or NSGA-III with Das-Dennis directions for 3+ objectives if `nsga3_above_two` (NATv2).
    It starts from random archs, or from the rows of `start` (e.g. the previous generation's final
    population: a warm start) filled up to `pop` with random ones."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.algorithms.moo.nsga3 import NSGA3
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize
    from pymoo.util.ref_dirs import get_reference_directions

    archive = problem.archive
    surrogate = ArchProblem(
        archive=Archive(space=archive.space, objectives=archive.objectives),
        accuracy=PredictedAccuracy(model),
        costs=problem.costs,
        budgets=problem.budgets,
        allowed_resolutions=problem.allowed_resolutions,
        record=False,
    )
    repair = surrogate.repair
    sampling = IntegerRandomSampling()
    if start is not None and len(start):
        rng = np.random.default_rng(seed)
        _, xu = archive.space.bounds()
        fill = rng.integers(0, xu + 1, (max(0, pop - len(start)), len(xu)))
        sampling = np.vstack([np.asarray(start, dtype=np.int64)[:pop], fill]).astype(float)
    operators = {
        "sampling": sampling,
        "crossover": SBX(prob=0.9, eta=15, vtype=float, repair=repair),
        "mutation": PM(eta=20, vtype=float, repair=repair),
        "repair": repair,
        "eliminate_duplicates": True,
    }
    n_obj = len(archive.objectives)
    if nsga3_above_two and n_obj > 2:
        directions = get_reference_directions("das-dennis", n_obj, n_partitions=6)
        algorithm = NSGA3(ref_dirs=directions, pop_size=max(pop, len(directions)), **operators)
    else:
        algorithm = NSGA2(pop_size=pop, **operators)
    result = minimize(surrogate, algorithm, ("n_gen", gens), seed=seed, verbose=False)
    return np.unique(repair._do(surrogate, np.asarray(result.pop.get("X"))), axis=0)  # one row per arch


def uniformity(values: np.ndarray, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance between `values` and the uniform distribution on [lo, hi] (Eq. 8):
    the one-sample statistic, sup |F_n - F|, as `scipy.stats.kstest` computes it (a test holds the two
    equal), in closed form because the pre-screening GA asks for it thousands of times."""
    u = np.sort(np.clip((np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0))
    n = len(u)
    steps = np.arange(1, n + 1) / n
    return float(max((steps - u).max(), (u - (steps - 1 / n)).max()))


def prescreen(
    latency: np.ndarray, parent_latency: np.ndarray, predicted: np.ndarray, k: int, *, seed: int = 0
) -> np.ndarray:
    """Algorithm 4: indices of at most k candidates, chosen first for uniform latency, then by accuracy."""
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import Problem
    from pymoo.core.sampling import Sampling
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.bitflip import BitflipMutation
    from pymoo.optimize import minimize

    n = len(latency)
    if n <= k:
        return np.arange(n)
    union = np.concatenate([latency, parent_latency])
    lo, hi = float(union.min()), float(union.max())

    class Subset(Problem):
        def __init__(self):
            super().__init__(n_var=n, n_obj=1, n_ieq_constr=1, xl=0, xu=1, vtype=bool)

        def _evaluate(self, X, out, *args, **kwargs):
            X = np.asarray(X, dtype=bool)
            out["F"] = np.array(
                [uniformity(np.concatenate([latency[row], parent_latency]), lo, hi) if row.any() else 1.0 for row in X]
            )
            out["G"] = X.sum(axis=1) - k

    class KSubsets(Sampling):
        def _do(self, problem, n_samples, **kwargs):
            rng = np.random.default_rng(seed)
            X = np.zeros((n_samples, n), dtype=bool)
            for row in X:
                row[rng.choice(n, size=k, replace=False)] = True
            return X

    algorithm = GA(
        pop_size=40,
        sampling=KSubsets(),
        crossover=TwoPointCrossover(),
        mutation=BitflipMutation(prob=1.0 / n),
        eliminate_duplicates=True,
    )
    result = minimize(Subset(), algorithm, ("n_gen", 40), seed=seed, verbose=False)
    chosen = list(np.flatnonzero(result.X)) if result.X is not None else []
    for i in np.argsort(-predicted):  # lines 7-12: fill the remaining slots by predicted accuracy
        if len(chosen) >= k:
            break
        if i not in chosen:
            chosen.append(int(i))
    return np.array(chosen[:k])


def calibrated(model, x: np.ndarray, y: np.ndarray):
    """`model`'s predictions mapped onto the accuracy scale by isotonic regression on its training
    set (monotone, so the predicted ranking stays as it is; RankNet's outputs are rank scores)."""
    from sklearn.isotonic import IsotonicRegression

    scale = IsotonicRegression(out_of_bounds="clip").fit(model.predict(x), y)
    return lambda rows: scale.predict(model.predict(rows))


def prescreen_hvi(front: np.ndarray, candidates: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most k candidates chosen greedily by predicted hypervolume improvement: each
    pick adds most to the hypervolume of the true front plus the picks so far (all rows objectives
    in minimisation form, candidates' accuracy predicted); once no candidate adds any, the rest by
    predicted accuracy (column 0)."""
    from pymoo.indicators.hv import HV

    hv = HV(ref_point=reference)
    chosen: list[int] = []
    current = front
    base = hv(current) if len(current) else 0.0
    while len(chosen) < min(k, len(candidates)):
        gains = np.array(
            [-1.0 if i in chosen else hv(np.vstack([current, c])) - base for i, c in enumerate(candidates)]
        )
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        chosen.append(best)
        current, base = np.vstack([current, candidates[best]]), base + gains[best]
    for i in np.argsort(candidates[:, 0], kind="stable"):
        if len(chosen) >= min(k, len(candidates)):
            break
        if i not in chosen:
            chosen.append(int(i))
    return np.array(chosen, dtype=np.int64)


def pick_by_hvi(
    problem: ArchProblem, predict, candidates: np.ndarray, k: int, reference: dict[str, float] | None
) -> np.ndarray:
    """`prescreen_hvi` on the candidates' predicted accuracy (`predict`, on the accuracy scale) and
    true costs, against the archive's front and the search's reference point."""
    archive = problem.archive
    costs = [problem.costs(o.name, candidates) for o in archive.objectives[1:]]
    f = np.column_stack([-predict(candidates), *costs])
    if reference:
        worst = np.array([0.0, *(reference[o.name] for o in archive.objectives[1:])])
    else:
        worst = np.maximum(f.max(0), archive.matrix().max(0)) * 1.1
        worst[0] = 0.0
    return prescreen_hvi(archive.matrix(archive.front()), f, worst, k)


@dataclass(kw_only=True)
class MosegnasSearch(Searcher):
    """Algorithm 1 with `termination.evaluations` supernet evaluations in all, `initial` of them to start from:
    the smallest and largest subnets and random archs, spread over cost (`init="cost-uniform"`,
    hwnas's default) or as drawn (`"random"`, the paper's).

    With `warm_start` (hwnas's default) each generation after the first continues from the last:
    RankNet from its weights for `warm_epochs` epochs, the surrogate NSGA-II from its final
    population for `warm_gens` generations. Off, every generation starts afresh as Algorithm 1
    reads (`surrogate_gens` generations, Table I's 500 epochs).

    With `local` (off here, natv2's default) the candidates also hold every one-gene neighbour of
    the evaluated front (`new_candidates`)."""

    per_generation: int = 8
    initial: int | None = None
    predictor: str = "ranknet"
    surrogate_pop: int = 100
    surrogate_gens: int = 60
    init: Literal["cost-uniform", "random"] = "cost-uniform"
    screening: Literal["hvi", "ks"] = "hvi"
    warm_start: bool = True
    warm_epochs: int = 100
    warm_gens: int = 20
    local: bool = False

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        evaluations = termination.evaluations
        reference = problem.reference
        archive, space = problem.archive, problem.archive.space
        cost = archive.objectives[1].name
        rng = np.random.default_rng(seed)
        _, xu = space.bounds()
        spread = self.init == "cost-uniform"
        # a resumed archive counts toward the initial design
        n0 = min(evaluations, self.initial or max(self.per_generation, evaluations // 3)) - len(archive)
        if n0 > 0:
            draw = lambda k: rng.integers(0, xu + 1, (k, len(xu)))  # noqa: E731
            problem.evaluate(initial_design(problem, n0, rng, spread=spread, draw=draw))
        history = archive.meta.setdefault("generations", [])  # in the archive as it grows, so a saved one resumes
        generation = len(history)
        total = generation + max(1, -(-(evaluations - len(archive)) // self.per_generation))
        if progress:  # the initial design is in: the bar knows its generations (and so an ETA) from here
            progress(generation, total, archive)
        model, population = None, None
        while len(archive) < evaluations:
            generation += 1
            x = np.array([space.encode(r.arch) for r in archive.records])
            y = np.array([r.values["accuracy"] for r in archive.records])
            warm = self.warm_start and model is not None
            model = make_predictor(
                self.predictor, space, seed=seed + generation, previous=model if warm else None,
                warm_epochs=self.warm_epochs,
            ).fit(x, y)  # fmt: skip
            population = candidates = surrogate_search(
                problem,
                model,
                pop=self.surrogate_pop,
                gens=self.warm_gens if warm else self.surrogate_gens,
                seed=seed + generation,
                nsga3_above_two=True,
                start=population if warm else None,
            )  # NSGA-III's reference directions keep a 3+ objective front (several devices) spread
            candidates = new_candidates(problem, candidates, local=self.local)
            k = min(self.per_generation, evaluations - len(archive))
            if len(candidates) == 0:  # the surrogate front is all evaluated already: explore at random
                candidates = problem.repair._do(problem, rng.integers(0, xu + 1, (k, len(xu))))
            if self.screening == "hvi":
                chosen = candidates[pick_by_hvi(problem, calibrated(model, x, y), candidates, k, reference)]
            else:
                front_cost = np.array([r.values[cost] for r in archive.front()])
                predicted = model.predict(candidates)
                chosen = candidates[prescreen(problem.costs(cost, candidates), front_cost, predicted, k, seed=seed)]
            before = len(archive)
            problem.evaluate(chosen)
            fresh = archive.records[before:]
            tau = np.nan
            if len(fresh) > 2:
                from scipy.stats import kendalltau

                guess = model.predict(np.array([space.encode(r.arch) for r in fresh]))
                tau = float(kendalltau(guess, [r.values["accuracy"] for r in fresh]).statistic)
            history.append(
                {
                    "generation": generation,
                    "evaluated": len(archive),
                    "hypervolume": archive.normalised_hypervolume(reference) if reference else None,  # as printed
                    "predictor_tau": tau,
                }
            )
            if progress:
                progress(generation, total, archive)
            if len(archive) == before:  # nothing new could be evaluated
                break
        return archive
