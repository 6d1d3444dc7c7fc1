"""The typer application every command module registers on."""

from __future__ import annotations

import sys
from typing import Any

import typer

from rt_middleware.errors import RTError


class _App(typer.Typer):
    """`rt`: an rt_middleware error from any command is one line on stderr and exit code 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except RTError as exc:
            from rt_middleware.cli.common import error_line

            print(error_line(exc), file=sys.stderr)
            raise SystemExit(2) from None


app = _App(
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
