"""Driving one searcher: `search(space, accuracy=, costs=, budgets=, algorithm=...)` checks the budgets,
settings and objectives, builds the problem (`ArchProblem`), the algorithm (a `Searcher` from
`SEARCHERS` with its settings) and the termination, runs `algorithm.solve(problem, termination)`
and returns the `Archive` with the hypervolume recorded; it resumes an interrupted search's archive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwnas.search.archive import Archive
from hwnas.search.budget import Budget, BudgetError, base
from hwnas.search.objectives import COSTS, Costs, Objective
from hwnas.search.predictors import NAMES as PREDICTORS
from hwnas.search.problem import ArchProblem, Progress
from hwnas.search.searchers import SEARCHERS, Termination
from hwnas.search.settings import parse_settings
from hwnas.space import SearchSpace

RAW_UNITS = {"latency": "ms", "energy": "mJ", "size": "MB"}


def reference_point(
    space: SearchSpace, costs: Costs, names: list[str], allowed_resolutions: list[int] | None
) -> dict[str, float]:
    """Hypervolume reference: accuracy 0 and 1.1 x each cost's upper bound (`Costs.upper_bound`: the
    largest subnet's, at an allowed resolution; a benchmark table's highest)."""
    return {"accuracy": 0.0, **{n: 1.1 * costs.upper_bound(n, allowed_resolutions) for n in names}}


def search(
    space: SearchSpace,
    *,
    accuracy,
    costs: Costs,
    budgets: list[Budget],
    objectives: list[str] | None = None,
    algorithm: str = "nsga2",
    evaluations: int = 64,
    seed: int = 0,
    allowed_resolutions: list[int] | None = None,
    progress: Progress | None = None,
    meta: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    settings: list[str] | dict[str, Any] | None = None,
    resume: Archive | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> Archive:
    """Find the accuracy/cost front under `budgets`; `accuracy` is a supernet or proxy evaluator.

    `options` go to the searcher as they are (predictor, PNAG's cache, NATv2's adaptation);
    `settings` are the algorithm's own (`--set surrogate_gens=100`, see `hwnas.search.settings`),
    checked against what it accepts and recorded in the archive.
    `resume` continues an interrupted search's archive (same settings): its archs count toward
    `evaluations` and seed the searcher; `progress` is the place to save it as it grows;
    `on_resume(n)` is told, once the archive is accepted, how many subnets it already holds.
    """
    searcher = SEARCHERS.get(algorithm)
    chosen = parse_settings(algorithm, searcher, settings)
    predictor = (options or {}).get("predictor")
    if predictor is not None and algorithm not in ("mosegnas", "natv2"):
        raise BudgetError(f"--predictor applies to mosegnas and natv2, not {algorithm}")
    allowed = (*PREDICTORS, "auto") if algorithm == "natv2" else PREDICTORS
    if predictor is not None and predictor not in allowed:
        raise BudgetError(f"unknown --predictor '{predictor}'; allowed: {', '.join(allowed)}")
    adapt_epochs = (options or {}).get("adapt_epochs", 0)
    if adapt_epochs and algorithm != "natv2":
        raise BudgetError(f"--adapt-epochs (supernet adaptation) applies to natv2, not {algorithm}")
    if adapt_epochs and resume is not None:
        raise BudgetError(
            "a search that adapts the supernet cannot resume: the archive's scores came from a supernet that "
            "has changed since; pass --fresh to start over"
        )
    if evaluations < 2:
        raise BudgetError(f"--evals must be at least 2, got {evaluations}")
    names = list(dict.fromkeys(objectives or [b.objective for b in budgets] or ["latency"]))
    for name in names:
        if base(name) not in COSTS:
            raise BudgetError(f"unknown objective '{name}'; allowed: {', '.join(COSTS)}")
    for b in budgets:
        lowest = costs.lower_bound(b.objective, allowed_resolutions)
        if lowest > b.limit:
            raise BudgetError(
                f"no subnet of '{space.name}' can meet the budget {b}: no {b.objective} goes below "
                f"{lowest:.4g} {RAW_UNITS.get(base(b.objective), '')}".rstrip()
                + " (every block at its cheapest choice); raise the budget"
            )
    archive = Archive(
        space=space,
        objectives=[Objective("accuracy", maximise=True), *(Objective(n) for n in names)],
        meta={
            "metric": accuracy.metric,
            "accuracy_source": accuracy.source,
            "algorithm": algorithm,
            "seed": seed,
            "evaluations": evaluations,
            "budgets": [b.text for b in budgets],
            "settings": chosen,
            **({"adapt_epochs": adapt_epochs} if adapt_epochs else {}),
            **({"energy_source": costs.energy_source} if "energy" in names else {}),
            **(meta or {}),
        },
    )
    if resume is not None:
        archive = _resumable(resume, archive)
        if on_resume:
            on_resume(len(archive))
    reference = reference_point(space, costs, names, allowed_resolutions)
    archive.meta["reference"] = reference
    problem = ArchProblem(
        archive=archive, accuracy=accuracy, costs=costs, budgets=budgets, allowed_resolutions=allowed_resolutions,
        reference=reference,
    )  # fmt: skip
    searcher(**chosen, **(options or {})).solve(problem, Termination(evaluations), seed=seed, progress=progress)
    archive.meta["hypervolume"] = archive.hypervolume(reference)
    archive.meta["hypervolume_normalised"] = archive.normalised_hypervolume(reference)
    return archive


_SAME = ("metric", "accuracy_source", "algorithm", "seed", "budgets", "settings")


def _resumable(old: Archive, new: Archive) -> Archive:
    """`old` with `new`'s meta, if it was made by the same search; else a `BudgetError`."""
    if [o.name for o in old.objectives] != [o.name for o in new.objectives]:
        raise BudgetError(
            f"the archive to resume trades accuracy against {[o.name for o in old.objectives[1:]]}, "
            f"this search against {[o.name for o in new.objectives[1:]]}; pass --fresh to start over"
        )
    before = {"settings": {}}  # archives written before settings were recorded had none
    same = [k for k in _SAME if not (k == "budgets" and new.meta.get("algorithm") == "pnag")]  # PNAG: any budget
    changed = [
        f"{k}={old.meta.get(k, before.get(k))!r} (now {new.meta.get(k)!r})"
        for k in same
        if old.meta.get(k, before.get(k)) != new.meta.get(k)
    ]
    if changed:
        raise BudgetError(f"the archive to resume was made with {', '.join(changed)}; pass --fresh to start over")
    old.meta.update(new.meta)
    return old
