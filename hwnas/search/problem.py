"""The search problem over the integer encoding, as pymoo poses it: `ArchProblem` (a pymoo `Problem`,
vectorised `_evaluate` filling F and G), its repair, and the initial designs the searchers share.

F holds the objectives in minimisation form (accuracy negated); G holds one inequality constraint
per budget, cost - limit <= 0. Every arch whose accuracy is computed lands in the `Archive`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from hwnas.search.archive import Archive
from hwnas.search.budget import Budget
from hwnas.search.objectives import Costs
from hwnas.space import SearchSpace  # or any space with its methods (hwnas.space.nb201.NB201Space)

Progress = Callable[[int, int, Archive], None]


class ArchRepair(Repair):
    """Round to integers, clip to the bounds, move the resolution gene to an allowed value, and
    canonicalise (`SearchSpace.canonical`): genes of blocks past a stage's depth become 0."""

    def __init__(self, space: SearchSpace, allowed_resolutions: list[int] | None = None):
        super().__init__()
        self.space = space
        self.xl, self.xu = space.bounds()
        self.allowed = np.array(sorted(allowed_resolutions)) if allowed_resolutions else None
        self.gene = space.gene("resolution") if self.allowed is not None else None

    def _do(self, problem, X, **kwargs):
        X = np.clip(np.round(np.asarray(X, dtype=float)), self.xl, self.xu).astype(np.int64)
        if self.allowed is not None:
            nearest = np.abs(X[:, self.gene][:, None] - self.allowed[None, :]).argmin(axis=1)
            X[:, self.gene] = self.allowed[nearest]
        return self.space.canonical(X)


class ArchProblem(Problem):
    """Objectives (accuracy first) and budgets of encoded archs; fills the archive as it goes."""

    def __init__(
        self,
        *,
        archive: Archive,
        accuracy,
        costs: Costs,
        budgets: list[Budget],
        allowed_resolutions: list[int] | None = None,
        record: bool = True,
        reference: dict[str, float] | None = None,
    ):
        space = archive.space
        xl, xu = space.bounds()
        super().__init__(
            n_var=space.n_var, n_obj=len(archive.objectives), n_ieq_constr=len(budgets), xl=xl, xu=xu, vtype=int
        )
        self.archive, self.accuracy, self.costs, self.budgets = archive, accuracy, costs, budgets
        self.repair = ArchRepair(space, allowed_resolutions)
        self.allowed_resolutions, self.record = allowed_resolutions, record
        self.reference = reference  # the hypervolume reference point, for searchers that choose by it

    def values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.int64)
        names = {o.name for o in self.archive.objectives[1:]} | {b.objective for b in self.budgets}
        values = {name: self.costs(name, x) for name in names}
        values[self.archive.objectives[0].name] = self.accuracy.many(x)
        return values

    def _evaluate(self, X, out, *args, **kwargs):
        x = np.asarray(X, dtype=np.int64)
        values = self.values(x)
        if self.record:
            for i, row in enumerate(x):
                arch = self.archive.space.decode(row)
                self.archive.add(arch, {k: v[i] for k, v in values.items()}, self.accuracy.source)
        out["F"] = np.column_stack([-values[o.name] if o.maximise else values[o.name] for o in self.archive.objectives])
        if self.budgets:
            out["G"] = np.column_stack([values[b.objective] - b.limit for b in self.budgets])


def unevaluated(problem: ArchProblem, x: np.ndarray) -> np.ndarray:
    """The rows of `x` whose arch is not in the archive yet, in their order."""
    space = problem.archive.space
    return np.array([r for r in x if space.decode(r) not in problem.archive], dtype=np.int64).reshape(-1, space.n_var)


def unarchived(problem: ArchProblem, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The distinct repaired rows of `x` that are not in the archive yet, in random order."""
    x = np.unique(problem.repair._do(problem, x), axis=0)
    return unevaluated(problem, x[rng.permutation(len(x))])


def spread_over_cost(problem: ArchProblem, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` of the candidate rows `x` spread evenly over the first cost's range: the range cut into n
    equal bins, one random candidate from each bin that has one, the rest at random.

    Random encodings are mostly of middling cost, while a front starts at the cheapest archs (on
    NAS-Bench-201's FPGA column the skip-only cells at the lowest latency hold 4.7% of the exact
    front's hypervolume); costs come from a table, free, so an initial design can cover their whole range.
    """
    if len(x) <= n:
        return x
    cost = problem.costs(problem.archive.objectives[1].name, x)
    edges = np.linspace(cost.min(), cost.max(), n + 1)
    bins = np.clip(np.searchsorted(edges, cost, side="right") - 1, 0, n - 1)
    chosen = [int(rng.choice(np.flatnonzero(bins == b))) for b in range(n) if (bins == b).any()]
    rest = np.setdiff1d(np.arange(len(x)), chosen)
    chosen += rng.choice(rest, n - len(chosen), replace=False).tolist()
    return x[np.asarray(chosen)]


def initial_design(
    problem: ArchProblem, n: int, rng: np.random.Generator, *, spread: bool, draw: Callable[[int], np.ndarray]
) -> np.ndarray:
    """`n` new archs to start a surrogate search from: the smallest and largest subnets, then archs
    from `draw(k)` (k encoded rows) as drawn, or, with `spread`, spread over cost (`spread_over_cost`
    on 20 x n draws)."""
    space = problem.archive.space
    ends = unarchived(problem, np.array([space.encode(space.min()), space.encode(space.max())]), rng)
    pool = unarchived(problem, draw((20 if spread else 4) * n), rng)
    pool = np.array([r for r in pool if not (r == ends).all(axis=1).any()], dtype=np.int64).reshape(-1, space.n_var)
    k = max(0, n - len(ends))
    rest = spread_over_cost(problem, pool, k, rng) if spread else pool[:k]
    return np.vstack([ends, rest])[:n]


def front_neighbours(problem: ArchProblem) -> np.ndarray:
    """Every arch one gene away from an arch on the archive's front, repaired, within the budgets
    and not evaluated yet: the local-search candidates a surrogate ranks beside those of its own
    search (`local=True` in mosegnas and natv2; measured in docs/results/measured.md)."""
    archive = problem.archive
    space = archive.space
    front = np.array([space.encode(r.arch) for r in archive.front()], dtype=np.int64).reshape(-1, space.n_var)
    xl, xu = space.bounds()
    moves = []
    for gene in range(space.n_var):
        for value in range(int(xl[gene]), int(xu[gene]) + 1):
            moved = front.copy()
            moved[:, gene] = value
            moves.append(moved[front[:, gene] != value])
    if not moves:
        return front[:0]
    x = np.unique(problem.repair._do(problem, np.vstack(moves)), axis=0)
    for budget in problem.budgets:
        x = x[problem.costs(budget.objective, x) <= budget.limit]
    return unevaluated(problem, x)


def new_candidates(problem: ArchProblem, population: np.ndarray, *, local: bool) -> np.ndarray:
    """What a surrogate-assisted searcher chooses among: the archs of its surrogate search's
    `population` not evaluated yet and, with `local`, the front's one-gene neighbours
    (`front_neighbours`)."""
    candidates = unevaluated(problem, population)
    return np.unique(np.vstack([candidates, front_neighbours(problem)]), axis=0) if local else candidates
