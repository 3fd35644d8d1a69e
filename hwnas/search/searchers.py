"""The searcher protocol, as pymoo separates a problem, an algorithm and a termination.

A `Searcher` is an algorithm with its settings: the fields of its dataclass, which a user reaches as
`hwnas search --set key=value` (`hwnas.search.settings`; fields marked `OWN_FLAG` have flags of their
own, e.g. `--predictor`). `solve(problem, termination)` evaluates archs through the `ArchProblem`
(which fills the archive) until `termination.evaluations` distinct archs are archived, reading the
hypervolume reference from `problem.reference`. `SEARCHERS` names them for `--algo`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from hwnas.registry import Registry
from hwnas.search.archive import Archive
from hwnas.search.budget import BudgetError
from hwnas.search.problem import ArchProblem, Progress

OWN_FLAG = {"own_flag": True}  # field metadata: set by its own flag, not by --set


@dataclass(frozen=True)
class Termination:
    """When a search stops: `evaluations` distinct archs in the archive (a resumed one's count)."""

    evaluations: int


class Searcher(ABC):
    """One search algorithm; its settings are its dataclass fields."""

    @abstractmethod
    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        """Evaluate archs of `problem` until `termination`; returns the problem's archive."""


SEARCHERS: Registry[type[Searcher]] = Registry(
    "--algo",
    {
        "mosegnas": "hwnas.search.mosegnas:MosegnasSearch",
        "natv2": "hwnas.search.natv2:Natv2Search",
        "pnag": "hwnas.search.pnag:PnagSearch",
        "nsga2": "hwnas.search.nsga:Nsga2Search",
        "random": "hwnas.search.baselines:RandomSearch",
        "evolution": "hwnas.search.baselines:EvolutionSearch",
    },
    error=BudgetError,
)
