"""`hwnas data check ROOT`: what a dataset folder holds, before anyone trains on it (`hwnas.data.check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import out, progress_bar, say, user_errors

app = typer.Typer(help="Dataset folders: check what one holds in the formats users download.")


@app.command("check")
def check(
    root: Annotated[
        Path, typer.Argument(help="a dataset folder (SALICON, MIT1003, ..., DUTS, ECSSD, ...) or a folder of them")
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON")] = None,
) -> None:
    """Read every image and its ground truth; say the format, splits, counts, sizes and what to know."""
    from hwnas.data.check import check as run_check
    from hwnas.files import atomic_write_json, writable_file

    with user_errors(), progress_bar() as bar:
        if json_out is not None:
            writable_file(json_out, what="--json file")
        reports = run_check(root, progress=bar.counter)
        if json_out is not None:
            atomic_write_json(json_out, [r.to_dict() for r in reports])
    for report in reports:
        say(f"{report.root}: {report.format} ({report.task})")
        amount_header = {"saliency": "fixations / image", "sod": "object area"}
        table = Table(
            "split", "images", "ground truth", "sizes (WxH)", amount_header.get(report.task, "classes, labelled pixels")
        )
        for s in report.splits:
            table.add_row(
                s.name, str(s.images), "yes" if s.labelled else "no (images only)", s.size_range, _amount(report, s)
            )
        out.print(table)
        if report.classes:
            say(f"classes ({len(report.classes)}): {escape(', '.join(report.classes))}")
        for note in report.notes:
            say(f"note: {escape(note)}", style="dim")
    if json_out is not None:
        say(f"wrote {json_out}")


def _amount(report, split) -> str:
    """Fixations per image (saliency), object area (sod), or classes present and labelled pixels (segmentation)."""
    if report.task == "saliency":
        return f"{split.fixations_per_image:.1f}" if split.fixations_per_image is not None else "-"
    if report.task == "sod":
        return f"{split.object_fraction:.1%}"
    if split.classes_present is None:
        return "-"
    return f"{split.classes_present} of {len(report.classes)}, {split.labelled_fraction:.1%}"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")
