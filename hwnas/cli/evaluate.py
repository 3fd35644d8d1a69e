"""`hwnas evaluate`: every metric of a subnet's task on a dataset, as the papers' tables print them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import (
    ArchPickOpt,
    CheckpointOpt,
    EvalBatchOpt,
    TorchDeviceOpt,
    check_early,
    out,
    progress_bar,
    say,
    user_errors,
)


def evaluate(
    supernet: CheckpointOpt,
    arch_pick: ArchPickOpt = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="dataset folder (or a folder of datasets), or synthetic/digits (default: what it trained on)"
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="val or test")] = "val",
    original: Annotated[
        bool, typer.Option("--original/--input-size", help="score at each image's original size (the benchmarks)")
    ] = True,
    sauc: Annotated[
        str, typer.Option(help="sAUC negatives: all (every other image's fixations, pysaliency) or mit (10 images)")
    ] = "all",
    submission: Annotated[
        Path | None, typer.Option(help="also write the maps as PNGs at original size in this new folder")
    ] = None,
    bn_data: Annotated[
        str | None, typer.Option(help="training images for BN recalibration (default: the dataset's train split)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the scores as JSON")] = None,
    torch_device: TorchDeviceOpt = "cpu",
    batch_size: EvalBatchOpt = 64,
    scales: Annotated[
        str,
        typer.Option(
            help="segmentation: input scales whose class probabilities are averaged, e.g. 0.75,1,1.25,1.5,1.75 "
            "(MoSegNAS's multi-scale row); 1 is single scale"
        ),
    ] = "1",
) -> None:
    """Score one subnet on a dataset with every metric of its task, as the benchmarks compute them."""
    check_early(torch_device=torch_device, batch_size=batch_size)
    from hwnas.files import atomic_write_json, writable_file
    from hwnas.train.evaluation import evaluate_checkpoint

    with user_errors(), progress_bar() as bar:
        if json_out is not None:
            writable_file(json_out, what="--json file")
        result = evaluate_checkpoint(
            supernet, arch_pick, data, which=split, original=original, shuffle=sauc, submission=submission,
            bn_data=bn_data, progress=bar.counter, device=torch_device, batch_size=batch_size,
            scales=parse_scales(scales),
        )  # fmt: skip
        if result is None:  # a torchrun rank other than 0: its share is computed, rank 0 reports
            return
        if json_out is not None:
            atomic_write_json(json_out, result.to_dict())
    _render(result)
    if json_out is not None:
        say(f"wrote {json_out}")


def parse_scales(text: str) -> tuple[float, ...]:
    """`0.75,1,1.25` -> (0.75, 1.0, 1.25); anything else one `HwnasError` showing the form."""
    from hwnas.errors import HwnasError

    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise HwnasError(f"--scales must look like 0.75,1,1.25 (numbers, comma-separated), got '{text}'") from None


def _render(result) -> None:
    from hwnas.data.metrics.names import HIGHER_IS_BETTER, LABELS

    say(f"{result.arch} ({result.task}); BN {result.bn}; scored at {result.scored_at}")
    metrics = [m for m in next((r.scores for r in result.rows if r.scores), {}) if m != "loss" and "/" not in m]
    if metrics:
        arrows = {m: "↑" if HIGHER_IS_BETTER.get(m, True) else "↓" for m in metrics}
        table = Table("dataset", "split", "images", *(f"{LABELS.get(m, m)} {arrows[m]}" for m in metrics))
        for row in result.rows:
            values = [row.scores.get(m, math.nan) for m in metrics]
            table.add_row(
                row.dataset, row.split, str(row.images), *("-" if math.isnan(v) else f"{v:.4f}" for v in values)
            )
        out.print(table)
    per_class = [m for m in next((r.scores for r in result.rows if r.scores), {}) if m.startswith("iou/")]
    if per_class:
        _render_classes(result, per_class)
    if result.task == "saliency" and metrics:
        negatives = "all other images, counted (pysaliency)" if result.shuffle == "all" else "MIT: 10 other images"
        say(f"sAUC negatives: {negatives}; IG against the training split's centre bias", style="dim")
    for row in result.rows:
        if row.submission is not None:
            say(f"wrote {row.images} maps to {row.submission}/")
    for note in result.notes:
        say(f"note: {escape(note)}", style="dim")
    say(f"{result.seconds:.1f} s", style="dim")


def _render_classes(result, keys: list[str]) -> None:
    """Segmentation: each class's IoU per dataset ('-' for a class neither labelled nor predicted)."""
    table = Table("class", *(f"IoU {row.dataset} ↑" for row in result.rows))
    for key in keys:
        c = int(key.split("/")[1])
        name = result.class_names[c] if c < len(result.class_names) else str(c)
        values = [row.scores.get(key, math.nan) for row in result.rows]
        table.add_row(f"{c} {name}", *("-" if math.isnan(v) else f"{v:.4f}" for v in values))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
