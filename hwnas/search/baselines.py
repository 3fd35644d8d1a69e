"""Baseline searchers: uniform random sampling and once-for-all's constrained evolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwnas.search.archive import Archive
from hwnas.search.operators import crossover, mutate
from hwnas.search.problem import ArchProblem, Progress
from hwnas.search.searchers import Searcher, Termination


@dataclass(kw_only=True)
class RandomSearch(Searcher):
    """Uniform samples over each variable (repaired) until `termination.evaluations` distinct archs are archived."""

    batch: int = 16

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        evaluations = termination.evaluations
        archive, space = problem.archive, problem.archive.space
        rng = np.random.default_rng(seed)
        _, xu = space.bounds()
        tries = 0
        while len(archive) < evaluations and tries < 100 * evaluations:
            tries += 1
            x = problem.repair._do(problem, rng.integers(0, xu + 1, size=(self.batch, len(xu))))
            fresh: dict[str, np.ndarray] = {}
            for row in x:
                key = str(space.decode(row))
                if key not in fresh and space.decode(row) not in archive and len(archive) + len(fresh) < evaluations:
                    fresh[key] = row
            if fresh:
                problem.evaluate(np.array(list(fresh.values())))
                if progress:
                    progress(len(archive), evaluations, archive)
        return archive


@dataclass(kw_only=True)
class EvolutionSearch(Searcher):
    """Once-for-all's evolution finder: a single objective (accuracy) under the budgets; each generation
    keeps the best `parent_ratio` of the population and refills it with mutants (`mutation_ratio`) and
    crossovers of parents, resampling any child that breaks a budget (up to 50 tries)."""

    population: int = 16
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        evaluations = termination.evaluations
        archive, space = problem.archive, problem.archive.space
        rng = np.random.default_rng(seed)
        _, xu = space.bounds()

        def feasible(x: np.ndarray) -> np.ndarray:
            ok = np.ones(len(x), dtype=bool)
            for b in problem.budgets:
                ok &= problem.costs(b.objective, x) <= b.limit
            return ok

        def draw(make) -> np.ndarray | None:
            for _ in range(50):
                x = problem.repair._do(problem, make()[None])
                if feasible(x)[0]:
                    return x[0]
            return None

        known = sorted(archive.feasible(problem.budgets), key=lambda r: -r.values["accuracy"])[: self.population]
        pop = [space.encode(r.arch) for r in known]  # a resumed search starts from its best archived archs
        pop += [
            x
            for x in (draw(lambda: rng.integers(0, xu + 1)) for _ in range(self.population - len(pop)))
            if x is not None
        ]
        if not pop:
            return archive
        problem.evaluate(np.array(pop[: max(1, min(len(pop), evaluations - len(archive) + len(known)))]))
        generation, total = 0, max(1, -(-evaluations // self.population))
        while len(archive) < evaluations:
            generation += 1
            scored = sorted(pop, key=lambda x: -archive.get(space.decode(x)).values["accuracy"])
            parents = scored[: max(2, int(self.parent_ratio * self.population))]
            children = []
            for i in range(self.population - len(parents)):
                if i < self.mutation_ratio * (self.population - len(parents)):
                    base = parents[rng.integers(len(parents))]
                    child = draw(lambda base=base: mutate(base, xu, rng, self.mutate_prob))
                else:
                    a, b = (parents[j] for j in rng.choice(len(parents), 2, replace=False))
                    child = draw(lambda a=a, b=b: crossover(a, b, rng))
                if child is not None:
                    children.append(child)
            fresh = [c for c in children if space.decode(c) not in archive][: evaluations - len(archive)]
            before = len(archive)
            if fresh:
                problem.evaluate(np.unique(np.array(fresh), axis=0))
            pop = parents + children
            if progress:
                progress(generation, total, archive)
            if len(archive) == before and generation > 10 * total:
                break
        return archive
