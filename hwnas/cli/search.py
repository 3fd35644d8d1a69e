"""`hwnas search`: parse, call `hwnas.search.run`, render the front and the chosen subnet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hwnas.cli.common import (
    DevicesDirOpt,
    EvalBatchOpt,
    SeedOpt,
    SpaceOpt,
    TorchDeviceOpt,
    check_early,
    err,
    flag,
    out,
    progress_bar,
    say,
    user_errors,
)
from hwnas.cli.common import warn as print_warning


def search(
    device: Annotated[
        list[str],
        typer.Option(
            "--device",
            "-d",
            metavar="DEVICE",
            help="device name or spec .toml (--space nb201: a latency column); repeat for several devices",
        ),
    ],
    budget: Annotated[
        list[str],
        typer.Option(
            help="e.g. 30ms, 2mJ, 300MFLOPs, 5M (params), 20MB, or DEVICE:12ms for one of several devices; repeatable",
            metavar="BUDGET",
        ),
    ],
    space_name: SpaceOpt = None,
    supernet: Annotated[Path | None, typer.Option(help="trained supernet checkpoint (hwnas train supernet)")] = None,
    proxy: Annotated[str | None, typer.Option(help="no supernet: rank by flops or params instead (a proxy)")] = None,
    lut_path: Annotated[
        list[Path] | None,
        typer.Option("--lut", help="table per --device, in order (default lut/DEVICE-SPACE.parquet)", metavar="PATH"),
    ] = None,
    benchmark: Annotated[
        Path | None,
        typer.Option(
            help="--space nb201: a NAS-Bench-201 table (default: the packaged one); --device names its column"
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="--space nb201: the table's accuracy column to search on (report *_test)")
    ] = "cifar100_val",
    algo: Annotated[
        str,
        typer.Option(
            help="mosegnas (surrogate-assisted), natv2 (archive-managed), pnag (budget-conditioned generator), "
            "nsga2, evolution or random"
        ),
    ] = "mosegnas",
    evals: Annotated[int, typer.Option(help="subnets to evaluate on the supernet, in all")] = 64,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="an algorithm setting, repeatable, e.g. surrogate_gens=100 (README: Search settings)",
            metavar="KEY=VALUE",
        ),
    ] = None,
    predictor: Annotated[
        str | None,
        typer.Option(
            help="accuracy predictor: ranknet (the default), lgbm (NATv2's paper), gp, svr, ridge, knn, "
            "cart; natv2 also auto (best k-fold Kendall tau)"
        ),
    ] = None,
    objectives: Annotated[str | None, typer.Option(help="costs to trade against accuracy, e.g. latency,params")] = None,
    adapt_epochs: Annotated[
        int,
        typer.Option(
            help="natv2: fine-tune the supernet this many epochs on front subnets between iterations "
            "(saved as supernet-adapted.pt in --out; 0: off)"
        ),
    ] = 0,
    data: Annotated[str | None, typer.Option(help="validation data (default: what the supernet trained on)")] = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="folder (default runs/SPACE-search-DEVICE)")
    ] = None,
    fresh: Annotated[bool, flag("--fresh", help="ignore an archive.json in --out instead of resuming it")] = False,
    devices_dir: DevicesDirOpt = None,
    torch_device: TorchDeviceOpt = "cpu",
    batch_size: EvalBatchOpt = 64,
    quantized_accuracy: Annotated[
        bool,
        flag("--quantized-accuracy", help="score each subnet with int8 simulated as the int8 devices' runtime runs it"),
    ] = False,
    confidence: Annotated[
        float | None,
        typer.Option(
            metavar="P",
            help="keep a subnet only if its latency stays under the budget with probability P (e.g. 0.9): latency "
            "is the upper bound of its interval",
        ),
    ] = None,
) -> None:
    """Search the most accurate subnets under a budget; write archive.json, best.json and pareto.png."""
    on_benchmark = space_name == "nb201" or benchmark is not None  # --device names a column of the table
    check_early(space=space_name, budgets=budget, devices=[] if on_benchmark else device, devices_dir=devices_dir,
                torch_device=torch_device, batch_size=batch_size)  # fmt: skip
    from hwnas.search import run

    with user_errors(resume="from the subnets already in archive.json"), progress_bar() as bar:
        job = bar.add_task(f"{algo} on {'+'.join(device)}", total=None, label="")
        result = run(
            device=device, budgets=budget, space=space_name, supernet=supernet, proxy=proxy, lut=lut_path,
            benchmark=benchmark, metric=metric,
            algorithm=algo, evaluations=evals, settings=settings, predictor=predictor,
            objectives=objectives.split(",") if objectives else None, adapt_epochs=adapt_epochs, data=data,
            seed=seed, out=out_dir, fresh=fresh, devices_dir=devices_dir, torch_device=torch_device,
            batch_size=batch_size, quantized_accuracy=quantized_accuracy, confidence=confidence,
            progress=lambda d, n, k: bar.update(job, completed=d, total=n, label=f"{k} subnets evaluated"),
            on_resume=lambda path, n: err.print(
                f"resuming {path}: {n} subnets were already evaluated", highlight=False, soft_wrap=True
            ),
        )  # fmt: skip
    if result is None:  # a rank other than 0 under torchrun: it scored its shares, rank 0 reports
        return
    for note in result.warnings:
        print_warning(note)
    for note in result.notes:
        say(note)
    _render(result)


def _render(result) -> None:
    archive, chosen, budgets = result.archive, result.chosen, result.budgets
    metric = archive.meta["metric"]
    source = archive.meta.get("accuracy_source", "supernet")
    label = f"{metric} (PROXY, not accuracy)" if metric.startswith("proxy") else f"{metric} ({source})"
    costs = archive.objectives[1:]
    front = Table("#", "", label, *(f"{o.name} ({o.unit})" for o in costs))
    knees = {str(r.arch) for r in archive.trade_offs()}
    records = archive.front()
    for i, rec in enumerate(records, 1):
        mark = ("[bold orange3]*[/]" if rec is chosen else "") + ("k" if str(rec.arch) in knees else "")
        front.add_row(
            str(i), mark, _score(metric, rec.values["accuracy"]),
            *(o.show(rec.values[o.name]).split()[0] for o in costs),
        )  # fmt: skip
    out.print(front)
    out.print("* chosen, k a high trade-off point of the front; their archs by number:", style="dim")
    for i, rec in enumerate(records, 1):
        say(f"{i:>3}  {rec.arch}")
    for g in archive.meta.get("generations", []):
        say(
            f"generation {g['generation']}: {g['evaluated']} evaluated, hypervolume {g['hypervolume']:.4g}, "
            f"predictor Kendall tau on the new subnets {g['predictor_tau']:.3f}"
        )
    costs_line = ", ".join(o.show(chosen.values[o.name]) for o in costs)
    score = chosen.values["accuracy"]
    score = "not evaluated (the generator's answer)" if math.isnan(score) else _score(metric, score)
    say(f"chosen: {label} {score}, {costs_line} under {', '.join(map(str, budgets))}")
    say(str(chosen.arch))
    confidence = archive.meta.get("latency_confidence")
    if confidence is not None:
        say(
            f"latency figures are upper bounds: each subnet stays under its figure with probability {confidence:g} "
            "(--confidence; the blocks' measured intervals and the calibration's scatter)"
        )
    say(hypervolume_line(archive))
    if archive.meta.get("pnag_cache") == "reused":
        say(
            f"pnag: answered by the cached generator {archive.meta['pnag_cache_file']} (inference "
            f"{max(archive.meta['pnag_seconds']):.3f} s); nothing was scored: the archs it learned from "
            "come from the cache"
        )
    elif archive.meta.get("pnag_cache_file"):
        say(
            f"pnag: generator trained on {archive.meta['pnag_scored']} scored archs, "
            f"kept in {archive.meta['pnag_cache_file']}"
        )
    if "adapted_supernet" in archive.meta:
        say(
            f"scores come from the adapted supernet {archive.meta['adapted_supernet']}: export and post-process from it"
        )
    say(f"wrote {result.folder}/archive.json, best.json, pareto.png")


def _score(metric: str, value: float) -> str:
    """A front's score in its own unit: accuracy to 4 places, a FLOPs or params proxy in G or M."""
    from hwnas.search.objectives import Objective

    proxy = metric.removeprefix("proxy-")
    return Objective(proxy).show(value) if metric.startswith("proxy-") else f"{value:.4f}"


def hypervolume_line(archive) -> str:
    """The normalised hypervolume with its reference said in each objective's own unit."""
    from hwnas.search.objectives import Objective

    reference = archive.meta["reference"]
    parts = [Objective(o.name).show(reference[o.name]) for o in archive.objectives[1:]]
    largest = "the table's highest" if archive.meta.get("accuracy_source") == "benchmark" else "the largest subnet's"
    return (
        f"hypervolume {archive.meta['hypervolume_normalised']:.4f} (normalised: each cost divided by its "
        f"reference, 1.1 x {largest}: {', '.join(parts)}; {archive.objectives[0].name} from 0)"
    )


def register(app: typer.Typer) -> None:
    app.command()(search)
