"""Multi-objective search over a supernet's space (or NAS-Bench-201's) under budgets.

The public API: `run` (what `hwnas search` does: devices, tables, supernet, files), `search` (one
searcher over a space, `hwnas.search.driver`), the `Archive` it fills, budgets (`parse_budget`,
`parse_budgets`) and the costs searched (`Costs`, `DeviceCosts`, `Objective`).
"""

from hwnas.search.archive import Archive, Record
from hwnas.search.budget import Budget, BudgetError, parse_budget, parse_budgets
from hwnas.search.driver import reference_point, search
from hwnas.search.objectives import Costs, DeviceCosts, Objective
from hwnas.search.runner import SearchResult, run
from hwnas.search.searchers import SEARCHERS

__all__ = ["SEARCHERS", "Archive", "Budget", "BudgetError", "Costs", "DeviceCosts", "Objective", "Record"]
__all__ += ["SearchResult", "parse_budget", "parse_budgets", "reference_point", "run", "search"]
