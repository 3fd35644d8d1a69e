"""The `hwnas` command line: each verb parses its options, calls one library function and renders
the result with rich. One module per verb group; `common` holds what they share.

Every `HwnasError` becomes one red line on stderr and exit code 2; Ctrl-C exits 130 and says how to
resume. Importing this package imports no torch, so `hwnas --help` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from hwnas.cli import convert, data, deploy, devices, evaluate, search, spaces, train
from hwnas.cli.common import err
from hwnas.errors import missing_extra
from hwnas.process_group import leave

app = typer.Typer(
    help="hwnas: hardware-aware latency profiling, architecture search and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"hwnas {version('hwnas')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit", metavar=""),
    ] = None,
) -> None:
    """hwnas: hardware-aware latency profiling, architecture search and export."""


for group in (spaces, devices, data, train, search, evaluate, deploy, convert):
    group.register(app)


def main() -> None:
    """The `hwnas` script: the app, with an optional dependency that is not installed answered by
    the extra that brings it (one line, exit code 2) wherever the verb imports it. A process that
    joined torchrun's group leaves it before exiting, whatever the verb's outcome."""
    try:
        app()
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        err.print(f"[red]error:[/red] {escape(str(missing))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    finally:
        leave()


__all__ = ["app", "main"]
