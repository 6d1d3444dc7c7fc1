"""Helpers shared by CLI commands: typed errors become one red line and exit code 2."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console

from rt_middleware.errors import ConfigError, RTError

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


def check_writable(path: Path, *, folder: bool = False) -> None:
    """Fail before minutes of model work, not after: `path` (a folder with `folder`, else a file)
    must be creatable. Probes by creating what is missing and one temporary file, then removes them."""
    if not folder and path.exists() and not path.is_file():
        raise ConfigError(f"cannot write {path}: it exists and is not a file")
    where = path if folder else path.parent
    missing = [p for p in (where, *where.parents) if not p.exists()]
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".rt-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write {'into ' if folder else ''}{path}: {exc.strerror or exc}") from None
    finally:
        for created in missing:  # innermost first: each is empty once its child is gone
            with contextlib.suppress(OSError):
                created.rmdir()
