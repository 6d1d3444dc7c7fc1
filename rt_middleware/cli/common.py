"""Helpers shared by CLI commands: typed errors become one red line and exit code 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from rt_middleware.errors import RTError

console = Console()
err_console = Console(stderr=True)


def error_line(exc: BaseException) -> str:
    """``error: <Type>: <message>`` on one line (newlines folded, length bounded, printable)."""
    text = " ".join(str(exc).split())
    if len(text) > 500:
        text = text[:497] + "..."
    line = f"error: {type(exc).__name__}: {text}"
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show an RTError as a one-line message instead of a traceback."""
    try:
        yield
    except RTError as exc:
        err_console.print(error_line(exc), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
