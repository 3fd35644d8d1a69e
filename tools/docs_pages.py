"""The docs site's generated pages, as an MkDocs hook (`mkdocs.yml`: `hooks: [tools/docs_pages.py]`).

- `reference/cli.md`: every `hwnas` command, its usage, help and options, read off the Typer app
  itself, so the reference cannot drift from the code.
- `results/index.md`: the benchmark figures in `bench/out/*.json`, one table per benchmark with the
  machine, the command and the date each was measured (`bench.common.save` records them), the
  figures picked as `python -m bench.run_all --summary` picks them.

`python tools/docs_pages.py cli|results` prints one page, for a look without building the site.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def cli_reference() -> str:
    """Markdown for every command of the `hwnas` Typer app, groups before their commands."""
    import typer.main

    from hwnas.cli import app

    root = typer.main.get_command(app)
    ctx = root.make_context("hwnas", [], resilient_parsing=True)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the Typer app (`hwnas.cli`) at build time; `hwnas COMMAND --help` prints the same.",
        "",
    ]
    lines += _command(root, ctx, "hwnas", level=2)
    return "\n".join(lines) + "\n"


def _command(command, ctx, path: str, *, level: int) -> list[str]:
    lines = []
    if path != "hwnas":
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [f"{'#' * level} `{path}`", "", (command.help or "").strip(), "", f"    {path} {usage}", ""]
        options = [p.get_help_record(ctx) for p in command.params]
        options = [o for o in options if o is not None]
        if options:
            lines += ["| option | what it does |", "| --- | --- |"]
            lines += [f"| `{opts}` | {_cell(help_text)} |" for opts, help_text in options]
            lines.append("")
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            sub_ctx = type(ctx)(sub, info_name=name, parent=ctx)
            lines += _command(sub, sub_ctx, f"{path} {name}", level=level if path == "hwnas" else level + 1)
    return lines


def _cell(text: str) -> str:
    """One table cell: on one line, with `|` and the `[default: ...]` brackets escaped."""
    return " ".join(text.split()).replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def results_page() -> str:
    """Markdown of the figures in bench/out/, each benchmark with its machine, command and date."""
    sys.path.insert(0, str(ROOT))  # the benchmarks are a folder of this repository, not the package
    from bench.run_all import STEPS, rows

    figures = rows()
    lines = [
        "# Results",
        "",
        "Generated from `bench/out/*.json` when the site is built (`tools/docs_pages.py`): what each benchmark",
        "measured the last time it was run and committed, with the machine, the command and the date it",
        "recorded. Speeds come from shared machines: compare ratios within one run. Earlier runs, with the",
        "reasoning behind each figure, are on [Measured figures](measured.md).",
        "",
    ]
    for name in STEPS:
        mine = [r for r in figures if r[0] == name and r[1] != "not run yet"]
        lines += [f"## {name}", ""]
        record = _record(name)
        if not mine or record is None:
            lines += [f"Not run in this checkout: `python -m bench.{name}` writes it.", ""]
            continue
        lines += [
            f"`{record.get('command', f'python -m bench.{name}')}`, {record.get('date', 'date not recorded')}, "
            f"on {record.get('machine', 'a machine not recorded')}",
            "",
            "| figure | value | target |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {_cell(figure)} | {_cell(value)} | {_cell(target)} |" for _, figure, value, target in mine]
        lines.append("")
    return "\n".join(lines) + "\n"


def _record(name: str) -> dict | None:
    """The JSON a benchmark wrote (lut_fidelity: its summary, else a device's validation)."""
    candidates = [f"{name}.json"] + (["cpu-validation.json"] if name == "lut_fidelity" else [])
    candidates += [p.name for p in sorted(OUT.glob(f"{name}-seed*.json"))]  # profile_speed: one file a seed
    candidates += [p.name for p in sorted(OUT.glob(f"{name}_[0-9]*.json"))]  # fewshot: one file a sample count
    candidates += [p.name for p in sorted(OUT.glob(f"{name}-[0-9]*.json"))]  # timings: one file a run
    for candidate in candidates:
        path = OUT / candidate
        if path.exists():
            return json.loads(path.read_text())
    return None


PAGES = {"reference/cli.md": cli_reference, "results/index.md": results_page}


def on_files(files, config):
    """MkDocs hook: add the generated pages to the site (nothing is written into docs/)."""
    from mkdocs.structure.files import File

    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files


if __name__ == "__main__":
    print({"cli": cli_reference, "results": results_page}[sys.argv[1]]())
