"""Multi-objective search over a supernet's space (or NAS-Bench-201's) under budgets.

The public API: `run` (what `hwnas search` does: devices, tables, supernet, files), `search` (one
searcher over a space, `hwnas.search.driver`), the `Archive` it fills, budgets (`parse_budget`,
`parse_budgets`) and the costs searched (`Costs`, `DeviceCosts`, `Objective`).

Names are imported on first use (PEP 562), so `hwnas.search.budget` can check a budget before
torch and pymoo are loaded (the CLI answers a mistyped flag at once).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Archive": "archive",
    "Record": "archive",
    "Budget": "budget",
    "BudgetError": "budget",
    "parse_budget": "budget",
    "parse_budgets": "budget",
    "reference_point": "driver",
    "search": "driver",
    "Costs": "objectives",
    "DeviceCosts": "objectives",
    "Objective": "objectives",
    "SearchResult": "runner",
    "run": "runner",
    "SEARCHERS": "searchers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'hwnas.search' has no attribute '{name}'")
    return getattr(importlib.import_module(f"hwnas.search.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
