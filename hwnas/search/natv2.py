"""NATv2's archive-managed, predictor-driven search (Sarti, Lomurno, Matteucci), on the search core.

- Archive initialisation: depth-uniform sampling (the total depth uniform over its range, then the
  per-stage split uniform among the splits with that total, other genes uniform), and the
  pre-processing step: sample `oversample` x the archive size, evaluate, keep the best A_s - 2 plus
  the largest and smallest subnets.
- A fixed-size archive with replacement: after each iteration the union of archive and new archs is
  ranked by non-dominated sorting and crowding distance and cut back to A_s, so a non-dominated arch
  is never dropped while a dominated one stays.
- The predictor: LightGBM with a 10-model ensemble (`predictor="lgbm"`, the paper's choice), hwnas's
  default RankNet (MoSegNAS's; on NAS-Bench-201 at 100 queries it gave 0.982 of the exact
  hypervolume where LightGBM, fitted on the 25-33 archs of the working archive, gave 0.950; see
  README), or `predictor="auto"`: the zoo member with the best k-fold Kendall tau on the archive.
- The choice of the archs to evaluate among the surrogate's front: by predicted hypervolume
  improvement (`selection="hvi"`, hwnas's default, shared with MoSegNAS's `screening="hvi"`) or by
  NSGA-II rank and crowding on the predictions (`"rank-crowd"`).
- The surrogate search: NSGA-II on (predicted accuracy, costs), NSGA-III with Das-Dennis reference
  directions when there are more than two objectives.
- Supernet adaptation (optional, `adapt_epochs` > 0): between iterations the supernet is fine-tuned
  on subnets drawn from the archive's current front (NAT's "adapt only what the front uses"); the
  working archive is re-scored on the adapted supernet before the predictor is fitted again, and at
  the end every record is, so all reported accuracies come from the one supernet saved to
  `adapt_out`.

The post-processing fine-tune of the chosen subnet is `hwnas.train.postprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hwnas.search.archive import Archive, Record
from hwnas.search.budget import BudgetError
from hwnas.search.mosegnas import PredictedAccuracy, calibrated, pick_by_hvi, surrogate_search
from hwnas.search.predictors import LightGBMEnsemble, make_predictor
from hwnas.search.problem import ArchProblem, Progress, initial_design, new_candidates
from hwnas.search.searchers import OWN_FLAG, Searcher, Termination
from hwnas.space import SearchSpace

ZOO = ("lgbm", "gp", "svr", "ridge", "knn", "cart")


# ---- archive initialisation --------------------------------------------------------------------
def depth_uniform(space: SearchSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` encoded archs whose total depth is uniform over its range and whose per-stage depths are
    uniform among the splits of that total; every other gene uniform."""
    genes = space.depth_genes()
    # ways[i][t]: number of depth choices for stages i.. that sum to t
    ways: list[dict[int, int]] = [dict() for _ in range(len(genes) + 1)]
    ways[-1] = {0: 1}
    for i in range(len(genes) - 1, -1, -1):
        for d in genes[i][1]:
            for t, count in ways[i + 1].items():
                ways[i][t + d] = ways[i].get(t + d, 0) + count
    totals = sorted(ways[0])
    _, xu = space.bounds()
    x = rng.integers(0, xu + 1, size=(n, space.n_var))
    for row in x:
        left = totals[rng.integers(len(totals))]
        for i, (gene, depths) in enumerate(genes):
            weights = np.array([ways[i + 1].get(left - d, 0) for d in depths], dtype=np.float64)
            choice = rng.choice(len(depths), p=weights / weights.sum())
            row[gene], left = choice, left - depths[choice]
    return x


def total_depth(space: SearchSpace, x: np.ndarray) -> np.ndarray:
    return sum(np.asarray(depths)[x[:, gene]] for gene, depths in space.depth_genes())


# ---- the fixed-size archive ----------------------------------------------------------------------
def rank_and_crowd(f: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` best rows of the objective matrix `f` (all minimised): whole
    non-dominated fronts in rank order, the last one cut by crowding distance (NSGA-II survival)."""
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if len(f) <= k:
        return np.arange(len(f))
    kept: list[int] = []
    for front in NonDominatedSorting().do(f):
        if len(kept) + len(front) <= k:
            kept += list(front)
            continue
        order = np.argsort(-calc_crowding_distance(f[front]), kind="stable")
        kept += list(np.asarray(front)[order[: k - len(kept)]])
        break
    return np.asarray(kept, dtype=np.int64)


def keep_best(archive: Archive, records: list[Record], size: int) -> list[Record]:
    """NATv2's replacement: the `size` best of `records` by `rank_and_crowd`, so no dominated arch
    outlives a non-dominated one and the archive never grows past `size`."""
    return [records[i] for i in rank_and_crowd(archive.matrix(records), size)]


def choose_predictor(space: SearchSpace, x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> str:
    """The zoo member with the highest mean k-fold Kendall tau on (x, y) (NATv2's predictor selection)."""
    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold

    best, best_tau = "lgbm", -np.inf
    splits = list(KFold(max(2, min(folds, len(x))), shuffle=True, random_state=seed).split(x))
    for name in ZOO:
        taus = []
        for train, test in splits:
            model = make_predictor(name, space, seed=seed).fit(x[train], y[train])
            tau = kendalltau(model.predict(x[test]), y[test]).statistic
            taus.append(0.0 if np.isnan(tau) else tau)
        if np.mean(taus) > best_tau:
            best, best_tau = name, float(np.mean(taus))
    return best


def _predictor(
    name: str, space: SearchSpace, x: np.ndarray, y: np.ndarray, seed: int, *, previous=None, warm_epochs: int = 0
):
    if name == "auto":
        name = choose_predictor(space, x, y, seed=seed)
    if name == "lgbm":
        model = LightGBMEnsemble(space, folds=10, seed=seed)
    else:
        model = make_predictor(name, space, seed=seed, previous=previous, warm_epochs=warm_epochs)
    return name, model.fit(x, y)


@dataclass(kw_only=True)
class Natv2Search(Searcher):
    """NATv2 with `termination.evaluations` supernet evaluations in all: initialisation (depth-uniform sampling,
    the paper's `init="depth-uniform"`, or hwnas's default `"cost-uniform"`: depth-uniform draws
    spread evenly over cost; then pre-processing; it spends `oversample` x A_s evaluations, capped
    at half the budget), then
    iterations of predictor fit, surrogate search, evaluation, archive replacement and, with
    `adapt_epochs`, supernet adaptation (the adapted supernet is written to `adapt_out`).
    `warm_start`, `warm_epochs` and `warm_gens` as `MosegnasSearch`'s: each iteration after the first
    continues the last one's RankNet and surrogate population (off: every iteration afresh). With
    `local` (hwnas's default) the candidates also hold every one-gene neighbour of the evaluated
    front (`new_candidates`; on NAS-Bench-201 at 100 queries 0.9854 -> 0.9902 of the exact
    hypervolume, docs/results/measured.md)."""

    archive_size: int | None = None
    oversample: int = 1
    per_iteration: int = 8
    predictor: str = "ranknet"
    surrogate_pop: int = 100
    surrogate_gens: int = 40
    adapt_epochs: int = field(default=0, metadata=OWN_FLAG)
    adapt_out: str | Path | None = field(default=None, metadata=OWN_FLAG)
    init: Literal["cost-uniform", "depth-uniform"] = "cost-uniform"
    selection: Literal["hvi", "rank-crowd"] = "hvi"
    warm_start: bool = True
    warm_epochs: int = 100
    warm_gens: int = 20
    local: bool = True

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        evaluations = termination.evaluations
        reference = problem.reference
        archive, space = problem.archive, problem.archive.space
        adapting = _check_adaptation(problem, self.adapt_epochs, self.adapt_out)
        spread = self.init == "cost-uniform"
        rng = np.random.default_rng(seed)
        size = self.archive_size or max(4, evaluations // 3)
        n0 = min(self.oversample * size, max(size, evaluations // 2)) - len(archive)
        if n0 > 0:
            draw = lambda k: depth_uniform(space, k, rng)  # noqa: E731
            problem.evaluate(initial_design(problem, n0, rng, spread=spread, draw=draw))
        ends = problem.repair._do(problem, np.array([space.encode(space.min()), space.encode(space.max())]))
        extremes = {str(space.decode(r)) for r in ends}
        pinned = [r for r in archive.records if str(r.arch) in extremes]
        others = sorted(
            (r for r in archive.records if str(r.arch) not in extremes), key=lambda r: -r.values["accuracy"]
        )
        working = pinned + others[: max(0, size - len(pinned))]  # the best A_s - 2 plus the two extremes
        history = archive.meta.setdefault("iterations", [])
        iteration = len(history)
        total = iteration + max(1, -(-(evaluations - len(archive)) // self.per_iteration))
        if progress:  # the initial archive is in: the bar knows its iterations (and so an ETA) from here
            progress(iteration, total, archive)
        model, population = None, None
        while len(archive) < evaluations:
            iteration += 1
            x = np.array([space.encode(r.arch) for r in working])
            y = np.array([r.values["accuracy"] for r in working])
            warm = self.warm_start and model is not None
            chosen_name, model = _predictor(
                self.predictor, space, x, y, seed + iteration, previous=model if warm else None,
                warm_epochs=self.warm_epochs,
            )  # fmt: skip
            population = candidates = surrogate_search(
                problem,
                model,
                pop=self.surrogate_pop,
                gens=self.warm_gens if warm else self.surrogate_gens,
                seed=seed + iteration,
                nsga3_above_two=True,
                start=population if warm else None,
            )
            candidates = new_candidates(problem, candidates, local=self.local)
            k = min(self.per_iteration, evaluations - len(archive))
            if len(candidates) == 0:
                candidates = problem.repair._do(problem, depth_uniform(space, k, rng))
            if self.selection == "hvi":
                chosen = candidates[pick_by_hvi(problem, calibrated(model, x, y), candidates, k, reference)]
            else:
                predicted = PredictedAccuracy(model)
                costs = [problem.costs(o.name, candidates) for o in archive.objectives[1:]]
                chosen = candidates[rank_and_crowd(np.column_stack([-predicted.many(candidates), *costs]), k)]
            before = len(archive)
            problem.evaluate(chosen)
            working = keep_best(archive, working + archive.records[before:], size)
            history.append(
                {
                    "iteration": iteration,
                    "evaluated": len(archive),
                    "predictor": chosen_name,
                    "hypervolume": archive.normalised_hypervolume(reference) if reference else None,  # as printed
                }
            )
            if adapting and len(archive) < evaluations and len(archive) > before:
                front = archive.front(working)
                problem.accuracy.adapt(
                    [r.arch for r in front], epochs=self.adapt_epochs, round=iteration, out=self.adapt_out
                )
                working = archive.rescore(problem.accuracy, working)
                history[-1]["adapted_on"] = len(front)
            if progress:
                progress(iteration, total, archive)
            if len(archive) == before:
                break
        if adapting and any("adapted_on" in h for h in history):
            archive.rescore(problem.accuracy)
            archive.meta["adapted_supernet"] = str(self.adapt_out)
            archive.meta["supernet"] = str(self.adapt_out)
        archive.meta["natv2_archive"] = [str(r.arch) for r in working]
        return archive


def _check_adaptation(problem: ArchProblem, epochs: int, out: str | Path | None) -> bool:
    if epochs < 0:
        raise BudgetError(f"--adapt-epochs must not be negative, got {epochs}")
    if epochs == 0:
        return False
    if not hasattr(problem.accuracy, "adapt"):
        raise BudgetError("supernet adaptation needs a trained supernet (--supernet), not a proxy")
    if out is None:
        raise BudgetError("supernet adaptation needs a path to save the adapted supernet to")
    return True
