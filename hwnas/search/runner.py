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

import numpy as np

from hwnas.errors import HwnasError
from hwnas.files import atomic_write_json, writable_file
from hwnas.nn.checkpoint import resolve_space
from hwnas.process_group import init_distributed
from hwnas.search.archive import Archive, Record
from hwnas.search.budget import Budget, base, device_of, parse_budgets
from hwnas.search.sharding import ShardedEvaluator, serve
from hwnas.space.tasks import is_segmentation
from hwnas.torch_device import torch_device as check_device


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
    notes: list[str] = field(default_factory=list)  # what the latencies rest on: each table's last check

    @property
    def files(self) -> list[Path]:
        return [self.folder / n for n in ("archive.json", "best.json", "pareto.png")]


@dataclass
class _Setup:
    """What a search runs on: a space, its costs and accuracy, the resolutions searched, file meta."""

    space: object
    costs: object
    accuracy: object
    allowed: list[int] | None
    device: str
    meta: dict[str, Any]
    trust: list[tuple[bool, str]] = field(default_factory=list)  # per latency table: (checked, line)


def _generated_answer(archive: Archive, budgets: list[Budget], space) -> Record | None:
    """PNAG's answer is the generator's arch, not the best of the archs it learned from: of this
    run's answers that meet every budget, the most accurate if they were scored, else the one with
    the highest cost (the answer to the loosest budget); None (and a warning) if none meets them.
    An answer that was not scored has accuracy NaN, source "generator (not evaluated)"."""
    answers = archive.meta.get("pnag_answers", [])[-len(budgets) :]  # a resumed archive keeps older answers
    meeting = [a for a in answers if all(a["values"][b.objective] <= b.limit for b in budgets)]
    if not meeting:
        archive.meta.setdefault("warnings", []).append(
            "the generator's answer misses the budget: the chosen arch is the best of the scored ones instead"
        )
        return None

    def rank(a: dict) -> tuple[float, float]:
        accuracy = a["values"]["accuracy"]
        return (-np.inf if accuracy is None else accuracy, sum(a["values"][b.objective] for b in budgets))

    best = max(meeting, key=rank)
    known = archive.get(space.parse(best["arch"]))
    if known is not None:
        return known
    values = {k: (float("nan") if v is None else v) for k, v in best["values"].items()}
    return Record(space.parse(best["arch"]), values, "generator (not evaluated)")


def default_cache_dir() -> Path:
    """$HWNAS_CACHE, else ~/.cache/hwnas: what searches share across output folders (PNAG's generators)."""
    import os

    return Path(os.environ.get("HWNAS_CACHE") or Path.home() / ".cache" / "hwnas")


def _supernet_setup(
    devices, space, supernet, proxy, luts, data, devices_dir, *, torch_device: str = "cpu", batch_size: int = 64,
    quantized: bool = False, confidence: float | None = None,
) -> _Setup:  # fmt: skip
    """A SalNAS space: each device's latency table, a supernet (or a labelled proxy) for accuracy."""
    from hwnas.hardware.device import load_device
    from hwnas.hardware.table import LatencyTable, default_path
    from hwnas.search.accuracy import ProxyEvaluator, SupernetEvaluator
    from hwnas.search.objectives import Costs, DeviceCosts

    specs = [load_device(d, devices_dir) for d in devices]
    scheme = _int8_scheme(specs) if quantized else None
    sp = resolve_space(space, supernet)
    if luts and len(luts) != len(specs):
        raise HwnasError(
            f"--lut names {len(luts)} table(s) for {len(specs)} --device(s): give one per device, in order"
        )
    paths = [Path(p) for p in luts] if luts else [default_path(spec.name, sp.name) for spec in specs]
    for spec, path in zip(specs, paths, strict=True):
        if not path.exists():
            raise HwnasError(f"latency table {path} does not exist; {_how_to_profile(spec, sp.name, path)}")
    tables = [LatencyTable.load(path, sp) for path in paths]
    for spec, path, table in zip(specs, paths, tables, strict=True):
        table.require_precision(spec.precision, path)
        built_for = table.meta.get("device", {}).get("name")
        if built_for != spec.name:
            raise HwnasError(f"latency table {path} was built for device '{built_for}', not '{spec.name}'")
        single = int((table.rows["rounds"] < 2).sum())
        if confidence is not None and single:
            raise HwnasError(
                f"--confidence needs every row's spread, but {single} row(s) of {path} were measured in one round "
                "(no spread): profile it again with at least 2 rounds (the default measures 3 or more)"
            )
    if supernet is None and proxy is None:
        raise HwnasError(
            "search needs a trained supernet to score subnets: train one with `hwnas train supernet --space "
            f"{sp.name}` and pass --supernet runs/{sp.name}-saliency/supernet.pt, or rank by --proxy flops|params"
        )
    task = tables[0].meta["task"]
    if any(t.meta["task"] != task for t in tables):
        raise HwnasError(f"the latency tables are for different heads: {[t.meta['task'] for t in tables]}")
    profiled = set.intersection(*({tuple(r) for r in t.meta["resolutions"]} for t in tables))
    allowed = sorted(sp.resolutions.index(r) for r in profiled if r in sp.resolutions)
    if not allowed:
        raise HwnasError("the devices' latency tables share no resolution: profile one at the same --resolution")
    classes = tables[0].classes
    if is_segmentation(task) and any(t.classes != classes for t in tables):
        raise HwnasError(f"the latency tables are for different class counts: {[t.classes for t in tables]}")
    accuracy = None
    if quantized and supernet is None:
        raise HwnasError("--quantized-accuracy scores a supernet's subnets: pass --supernet, not --proxy")
    if supernet is not None:
        accuracy = SupernetEvaluator(
            supernet, sp, data=data, device=torch_device, batch_size=batch_size, quantization=scheme
        )
        if accuracy.task_name != task:
            raise HwnasError(f"the supernet is a {accuracy.task_name} model but the table is for the {task} head")
        if is_segmentation(task) and accuracy.task.num_classes != classes:
            raise HwnasError(
                f"the supernet predicts {accuracy.task.num_classes} classes but the latency table profiled "
                f"{classes}: profile with --classes {accuracy.task.num_classes}"
            )
        classes = getattr(accuracy.task, "num_classes", classes)  # params and FLOPs of the model searched
    costs = DeviceCosts(
        {
            spec.name: Costs(sp, task=task, num_classes=classes, table=t, confidence=confidence)
            for spec, t in zip(specs, tables, strict=True)
        }
    )
    if accuracy is None:
        accuracy = ProxyEvaluator(proxy, costs, sp)
    names = "+".join(spec.name for spec in specs)
    table_meta = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    meta = {"device": names, "table": table_meta, "supernet": str(supernet or "")}
    if confidence is not None:
        meta["latency_confidence"] = confidence  # every latency is the upper bound at this confidence
    predicted = {spec.name: t.provenance() for spec, t in zip(specs, tables, strict=True) if t.prediction is not None}
    if predicted:
        meta["table_predicted"] = predicted
    resolutions = [sp.resolutions[i] for i in allowed]
    trust = [
        (ok, f"latency table {path} ({spec.name}): {line}")
        for (ok, line), path, spec in zip((t.trust(resolutions) for t in tables), paths, specs, strict=True)
    ]
    return _Setup(sp, costs, accuracy, allowed, names, meta, trust)


def _how_to_profile(spec, space: str, path: Path) -> str:
    """How to build a missing table: here, or (a device that does not run here) through its agent."""
    command = f"hwnas profile --device {spec.name} --space {space} --out {path}"
    reason = spec.availability()
    if reason is None:
        return f"build it with `{command}`"
    return (
        f"{spec.name} does not run here ({reason}): run `hwnas agent` on the device, then `{command} "
        "--remote http://DEVICE:8765`"
    )


def _benchmark_setup(devices, benchmark, metric, supernet, proxy, luts) -> _Setup:
    """NAS-Bench-201: accuracy and latency are the benchmark table's columns (hwnas.space.nb201)."""
    from hwnas.search.objectives import DeviceCosts
    from hwnas.space.nb201 import Benchmark, BenchmarkAccuracy, BenchmarkCosts

    given = [name for name, value in (("--supernet", supernet), ("--proxy", proxy), ("--lut", luts)) if value]
    if given:
        raise HwnasError(f"{', '.join(given)} do not apply to --space nb201: its benchmark table scores every cell")
    table = Benchmark.load(benchmark)
    costs = DeviceCosts({str(d): BenchmarkCosts(table, device=str(d)) for d in devices})
    accuracy = BenchmarkAccuracy(table, metric)
    names = "+".join(map(str, devices))
    meta = {"device": names, "benchmark": table.source, "benchmark_digest": table.meta["digest"]}
    return _Setup(table.space, costs, accuracy, None, names, meta)


def _objectives(devices: list, budgets: list[Budget], objectives: list[str] | None) -> list[str] | None:
    """Several devices: each device's latency is an objective, with or without a budget on it."""
    if objectives is not None or len(devices) < 2:
        return objectives
    return list(dict.fromkeys([*(f"latency@{d}" for d in devices), *(b.objective for b in budgets)]))


def run(
    *,
    device: str | Path | list[str],
    budgets: list[str] | list[Budget],
    space: str | None = None,
    supernet: str | Path | None = None,
    proxy: str | None = None,
    lut: str | Path | list[str | Path] | None = None,
    benchmark: str | Path | None = None,
    metric: str = "cifar100_val",
    algorithm: str = "mosegnas",
    evaluations: int = 64,
    settings: list[str] | dict[str, Any] | None = None,
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
    cache_dir: str | Path | None = None,
    torch_device: str = "cpu",
    batch_size: int = 64,
    quantized_accuracy: bool = False,
    confidence: float | None = None,
) -> SearchResult | None:
    """Search the most accurate subnet under `budgets` on `device`; `progress(done, total, evaluated)`
    as it goes, `on_resume(archive_path, n_evaluated)` when it continues an earlier archive.

    With `space="nb201"` (or a `benchmark` table) the space is NAS-Bench-201's cell, `device` names
    the table's `latency_ms_<device>` column and `metric` its accuracy column (`*_val` to search on).
    PNAG's trained generator is kept in `cache_dir` (default `default_cache_dir()`) under a key of the
    space, table(s), accuracy source, scored-arch count, K and seed, so a later search for another
    budget finds it whatever `out` is and answers by inference.
    Several devices (a list, one `lut` per device): each device's latency is an objective (NSGA-III
    for 3+ objectives in mosegnas and natv2), budgets name their device (`pixel3:12ms`), and the
    chosen arch meets every budget.
    A supernet's subnets are extracted, recalibrated and scored on `torch_device` (cpu, cuda[:N],
    mps), `batch_size` images per prediction batch. Under `torchrun` (several processes) rank 0
    searches and every rank scores a share of each generation on its own device
    (`hwnas.search.sharding`); the other ranks return None, having written nothing.
    With `quantized_accuracy` (int8 devices only), each candidate is scored after int8 simulated in
    torch as its devices' runtime quantizes (`hwnas.nn.quantize`): the search ranks the int8 model.
    With `confidence` (in (0, 1)), a subnet's latency is the upper bound it stays under with that
    probability (`LatencyTable.upper_many`: the blocks' measured intervals and the calibration's
    scatter), so the subnet chosen keeps its budget with at least that confidence.
    """
    from hwnas.search import driver  # noqa: F401 - it needs pymoo, whose absence is said before any file is read

    check_device(torch_device)  # before any table or checkpoint is read, whether or not a network runs
    if batch_size < 1:
        raise HwnasError(f"--batch-size must be at least 1, got {batch_size}")
    if confidence is not None and not 0 < confidence < 1:
        raise HwnasError(f"--confidence must be between 0 and 1 (e.g. 0.9), got {confidence:g}")
    budgets = parse_budgets(budgets) if budgets and isinstance(budgets[0], str) else list(budgets)
    devices = list(dict.fromkeys(device if isinstance(device, list | tuple) else [device]))
    luts = lut if isinstance(lut, list | tuple) else ([lut] if lut is not None else None)
    if space == "nb201" or benchmark is not None:
        if space not in (None, "nb201"):
            raise HwnasError(f"--benchmark goes with --space nb201, not --space {space}")
        rank, world, _ = init_distributed("cpu")  # under torchrun only to refuse it: a table scores nothing
        if quantized_accuracy:
            raise HwnasError("--quantized-accuracy scores a supernet's subnets; NAS-Bench-201's table has no int8")
        if confidence is not None:
            raise HwnasError("--confidence needs measured latency tables; NAS-Bench-201's latencies have no intervals")
        setup = _benchmark_setup(devices, benchmark, metric, supernet, proxy, luts)
    else:
        rank, world, torch_device = init_distributed(torch_device)
        setup = _supernet_setup(
            devices, space, supernet, proxy, luts, data, devices_dir, torch_device=torch_device, batch_size=batch_size,
            quantized=quantized_accuracy, confidence=confidence,
        )  # fmt: skip
    if world > 1:
        _check_sharded(setup, world, adapt_epochs)
        if rank != 0:
            serve(setup.accuracy, rank=rank, world=world)
            return None
        setup.accuracy = ShardedEvaluator(setup.accuracy, world=world)
    try:
        return _search_and_write(
            setup, budgets=budgets, devices=devices, objectives=objectives, algorithm=algorithm,
            evaluations=evaluations, settings=settings, predictor=predictor, adapt_epochs=adapt_epochs, seed=seed,
            out=out, fresh=fresh, progress=progress, on_resume=on_resume, cache_dir=cache_dir,
        )  # fmt: skip
    finally:
        if world > 1:
            setup.accuracy.close()


def _int8_scheme(specs):
    """The one int8 scheme every device's runtime quantizes with (`--quantized-accuracy`)."""
    from hwnas.nn.quantize import scheme_for

    fp = [s.name for s in specs if s.precision != "int8"]
    if fp:
        raise HwnasError(
            f"--quantized-accuracy scores int8 models, but {', '.join(fp)} is not an int8 device: search "
            "with int8 devices (cpu-int8, cpu-tflite-int8, snapdragon8-int8, rtx4090-int8, m2-int8)"
        )
    schemes = {scheme_for(s.backend, s.provider) for s in specs}
    if len(schemes) > 1:
        raise HwnasError(
            "--quantized-accuracy simulates one int8 scheme, but the devices quantize differently: "
            f"{'; '.join(str(x) for x in schemes)}: search them one at a time"
        )
    return schemes.pop()


def _check_sharded(setup: _Setup, world: int, adapt_epochs: int) -> None:
    """What a search spread over `world` processes needs: supernet evaluations to share, and a
    supernet that stays as it is (NATv2's adaptation retrains it between iterations)."""
    from hwnas.search.accuracy import SupernetEvaluator

    if not isinstance(setup.accuracy, SupernetEvaluator):
        raise HwnasError(
            f"this search runs in {world} processes (torchrun) but evaluates nothing on a supernet "
            f"({setup.accuracy.source}): run it as one process"
        )
    if adapt_epochs:
        raise HwnasError(f"--adapt-epochs retrains the supernet between iterations; run it as one process, not {world}")


def _search_and_write(
    setup: _Setup, *, budgets, devices, objectives, algorithm, evaluations, settings, predictor, adapt_epochs, seed,
    out, fresh, progress, on_resume, cache_dir,
) -> SearchResult:  # fmt: skip
    """`run` from its setup on: the search (resumed from `out`'s archive unless `fresh`), then
    archive.json, best.json and pareto.png."""
    from hwnas.search.driver import search
    from hwnas.search.plot import pareto_png

    objectives = _objectives(devices, budgets, objectives)
    sp = setup.space
    folder = Path(out) if out is not None else Path("runs") / f"{sp.name}-search-{setup.device}"
    previous = None
    if not fresh and (folder / "archive.json").exists():
        previous = Archive.load(folder / "archive.json", sp)
        was, now = previous.meta.get("latency_confidence"), setup.meta.get("latency_confidence")
        if was != now:
            said = {None: "without --confidence"}
            raise HwnasError(
                f"{folder / 'archive.json'} was searched {said.get(was, f'with --confidence {was}')}, this search "
                f"{said.get(now, f'with --confidence {now}')}: its latencies mean something else; pass --fresh or "
                "another --out"
            )
    writable_file(folder / "archive.json", what="search archive")

    def report(done: int, total: int, archive: Archive) -> None:
        archive.save(folder / "archive.json")  # an interrupted search resumes from here
        if progress:
            progress(done, total, len(archive))

    options: dict[str, Any] = {
        **({"predictor": predictor} if predictor else {}),
        **({"cache": cache_dir or default_cache_dir()} if algorithm == "pnag" else {}),
        **({"adapt_epochs": adapt_epochs, "adapt_out": folder / "supernet-adapted.pt"} if adapt_epochs else {}),
    }
    archive = search(
        sp,
        accuracy=setup.accuracy,
        costs=setup.costs,
        budgets=budgets,
        algorithm=algorithm,
        evaluations=evaluations,
        seed=seed,
        objectives=objectives,
        allowed_resolutions=setup.allowed,
        progress=report,
        meta=setup.meta,
        options=options,
        settings=settings,
        resume=previous,
        on_resume=(lambda n: on_resume(folder / "archive.json", n)) if on_resume else None,
    )
    archive.save(folder / "archive.json")
    chosen = _generated_answer(archive, budgets, sp) if algorithm == "pnag" else None
    chosen = chosen or archive.pick(budgets)
    best = {**sp.arch_to_dict(chosen.arch), "search": _context(setup, budgets, chosen)}
    atomic_write_json(folder / "best.json", best)
    title = f"{sp.name} on {setup.device}, {algorithm}, budget {', '.join(map(str, budgets))}"
    pareto_png(archive, budgets=budgets, chosen=chosen, path=folder / "pareto.png", title=title)
    return SearchResult(
        archive=archive,
        chosen=chosen,
        budgets=budgets,
        folder=folder,
        device=setup.device,
        algorithm=algorithm,
        resumed=len(previous) if previous is not None else 0,
        warnings=[*(line for ok, line in setup.trust if not ok), *archive.meta.get("warnings", [])],
        notes=[line for ok, line in setup.trust if ok],
    )


def _context(setup: _Setup, budgets: list[Budget], chosen: Record) -> dict[str, Any]:
    """What best.json keeps of the search that chose it, so that `export` and `report` can hold the
    measured file to the budget: the budgets, each searched device's latency limit in ms, the
    predicted costs and the tables (with whether each was checked against whole subnets)."""
    devices = setup.device.split("+")
    limits: dict[str, float] = {}
    for b in budgets:
        device = device_of(b.objective) or (devices[0] if len(devices) == 1 else None)
        if base(b.objective) == "latency" and device is not None:
            limits[device] = min(b.limit, limits.get(device, float("inf")))
    return {
        "budgets": [b.text for b in budgets],
        "latency_budget_ms": limits,
        "predicted": {k: float(v) for k, v in chosen.values.items() if np.isfinite(v)},
        "device": setup.device,
        "table": setup.meta.get("table") or setup.meta.get("benchmark"),
        "table_checked": all(ok for ok, _ in setup.trust),
        "table_predicted": setup.meta.get("table_predicted", {}),
        "latency_confidence": setup.meta.get("latency_confidence"),  # predicted latencies: upper bounds at this
    }
