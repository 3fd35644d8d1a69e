"""`run(...)`: what `hwnas search` does, callable from Python.

Check the device, table, supernet (or proxy) and output folder before any evaluation; resume an
archive found in the folder; run one searcher (`search`); pick the most accurate subnet under the
budgets and write `archive.json`, `best.json` and `pareto.png`. Returns a `SearchResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.io import atomic_write_json, writable_file
from hwnas.search.archive import Archive, Record
from hwnas.search.budget import Budget, parse_budgets
from hwnas.space import resolve_space


@dataclass
class SearchResult:
    archive: Archive
    chosen: Record
    budgets: list[Budget]
    folder: Path
    device: str
    algorithm: str
    resumed: int = 0  # subnets that were already in the archive it resumed
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [self.folder / n for n in ("archive.json", "best.json", "pareto.png")]


def run(
    *,
    device: str | Path,
    budgets: list[str] | list[Budget],
    space: str | None = None,
    supernet: str | Path | None = None,
    proxy: str | None = None,
    lut: str | Path | None = None,
    algorithm: str = "mosegnas",
    evaluations: int = 64,
    predictor: str | None = None,
    objectives: list[str] | None = None,
    adapt_epochs: int = 0,
    data: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    fresh: bool = False,
    devices_dir: str | Path | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    on_resume: Callable[[Path, int], None] | None = None,
) -> SearchResult:
    """Search the most accurate subnet under `budgets` on `device`; `progress(done, total, evaluated)`
    as it goes, `on_resume(archive_path, n_evaluated)` when it continues an earlier archive."""
    from hwnas.devices import load_device
    from hwnas.lut import LatencyTable, default_path
    from hwnas.search import Costs, search
    from hwnas.search.evaluator import ProxyEvaluator, SupernetEvaluator
    from hwnas.search.plot import pareto_png

    spec = load_device(device, devices_dir)
    sp = resolve_space(space, supernet)
    budgets = parse_budgets(budgets) if budgets and isinstance(budgets[0], str) else list(budgets)
    path = Path(lut) if lut is not None else default_path(spec.name, sp.name)
    table = LatencyTable.load(path, sp)
    built_for = table.meta.get("device", {}).get("name")
    if built_for != spec.name:
        raise HwnasError(f"latency table {path} was built for device '{built_for}', not '{spec.name}'")
    if supernet is None and proxy is None:
        raise HwnasError(
            "search needs a trained supernet to score subnets: train one with `hwnas train supernet --space "
            f"{sp.name}` and pass --supernet runs/{sp.name}-saliency/supernet.pt, or rank by --proxy flops|params"
        )
    allowed = [sp.resolutions.index(tuple(r)) for r in table.meta["resolutions"] if tuple(r) in sp.resolutions]
    task = table.meta["task"]
    costs = Costs(sp, task=task, table=table)
    if supernet is not None:
        accuracy = SupernetEvaluator(supernet, sp, data=data)
        if accuracy.task_name != task:
            raise HwnasError(f"the supernet is a {accuracy.task_name} model but the table is for the {task} head")
    else:
        accuracy = ProxyEvaluator(proxy, costs, sp)
    folder = Path(out) if out is not None else Path("runs") / f"{sp.name}-search-{spec.name}"
    previous = None
    if not fresh and (folder / "archive.json").exists():
        previous = Archive.load(folder / "archive.json", sp)
    writable_file(folder / "archive.json", what="search archive")

    def report(done: int, total: int, archive: Archive) -> None:
        archive.save(folder / "archive.json")  # an interrupted search resumes from here
        if progress:
            progress(done, total, len(archive))

    options: dict[str, Any] = {
        **({"predictor": predictor} if predictor else {}),
        **({"cache": folder / "pnag.pt"} if algorithm == "pnag" else {}),
        **({"adapt_epochs": adapt_epochs, "adapt_out": folder / "supernet-adapted.pt"} if adapt_epochs else {}),
    }
    archive = search(
        sp,
        accuracy=accuracy,
        costs=costs,
        budgets=budgets,
        algorithm=algorithm,
        evaluations=evaluations,
        seed=seed,
        objectives=objectives,
        allowed_resolutions=allowed,
        progress=report,
        meta={"device": spec.name, "table": str(path), "supernet": str(supernet or "")},
        options=options,
        resume=previous,
        on_resume=(lambda n: on_resume(folder / "archive.json", n)) if on_resume else None,
    )
    archive.save(folder / "archive.json")
    chosen = archive.pick(budgets)
    atomic_write_json(folder / "best.json", sp.arch_to_dict(chosen.arch))
    title = f"{sp.name} on {spec.name}, {algorithm}, budget {', '.join(map(str, budgets))}"
    pareto_png(archive, budgets=budgets, chosen=chosen, path=folder / "pareto.png", title=title)
    return SearchResult(
        archive=archive,
        chosen=chosen,
        budgets=budgets,
        folder=folder,
        device=spec.name,
        algorithm=algorithm,
        resumed=len(previous) if previous is not None else 0,
        warnings=list(archive.meta.get("warnings", [])),
    )
