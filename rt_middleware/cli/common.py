"""Helpers shared by CLI commands: typed errors become one red line and exit code 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from rt_middleware.errors import RTError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show an RTError as a one-line message instead of a traceback."""
    try:
        yield
    except RTError as exc:
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(code=2) from None
