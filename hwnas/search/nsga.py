"""NSGA-II over the integer encoding with pymoo (`nsga2`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwnas.search.archive import Archive
from hwnas.search.problem import ArchProblem, Progress
from hwnas.search.searchers import Searcher, Termination


@dataclass(kw_only=True)
class Nsga2Search(Searcher):
    """pymoo NSGA-II (integer SBX and polynomial mutation with the arch repair), run by ask and tell
    until `termination.evaluations` distinct archs are in the archive (the last generation is cut to fit)."""

    pop_size: int = 16

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        evaluations = termination.evaluations

        repair = problem.repair
        pop_size = max(2, min(self.pop_size, evaluations))
        archive = problem.archive
        ranked = {
            str(r.arch): r.arch for r in archive.front() + sorted(archive.records, key=lambda r: -r.values["accuracy"])
        }
        start = [
            archive.space.encode(a) for a in list(ranked.values())[:pop_size]
        ]  # a resumed search starts from its best
        sampling = np.array(start) if len(start) >= 2 else IntegerRandomSampling()
        algorithm = NSGA2(
            pop_size=pop_size,
            sampling=sampling,
            crossover=SBX(prob=0.9, eta=15, vtype=float, repair=repair),
            mutation=PM(eta=20, vtype=float, repair=repair),
            repair=repair,
            eliminate_duplicates=True,
        )
        algorithm.setup(problem, termination=("n_gen", 10**9), seed=seed, verbose=False)
        space = archive.space
        generation, stalled, total = 0, 0, max(1, -(-evaluations // pop_size))
        while len(archive) < evaluations and stalled < 20:
            generation += 1
            pop = algorithm.ask()
            x = np.asarray(pop.get("X"), dtype=np.int64)
            room, keep = evaluations - len(archive), []
            for i, row in enumerate(x):  # archived archs cost nothing (cached); new ones only while budget lasts
                if space.decode(row) in archive or room > 0:
                    room -= space.decode(row) not in archive
                    keep.append(i)
            before = len(archive)
            pop = pop[keep]
            algorithm.evaluator.eval(problem, pop)
            algorithm.tell(infills=pop)
            stalled = stalled + 1 if len(archive) == before else 0
            if progress:
                progress(min(generation, total), total, archive)
        return problem.archive
