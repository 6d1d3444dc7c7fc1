"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rt",
    help="Refusal-token middleware: decide, route, train, export, evaluate and calibrate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Refusal-token middleware: decide, route, train, export, evaluate and calibrate."""
