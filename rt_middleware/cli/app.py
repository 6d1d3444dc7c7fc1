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
    use_checkout_data()


def use_checkout_data() -> None:
    """Commands that read data sets default ``$RT_DATA_DIR`` to ``shared/data`` beside a source
    checkout (the library itself only reads the variable or an argument)."""
    import os

    from rt_middleware.datasets.base import DATA_DIR_ENV, checkout_data_dir

    if not os.environ.get(DATA_DIR_ENV) and (folder := checkout_data_dir()) is not None:
        os.environ[DATA_DIR_ENV] = str(folder)
