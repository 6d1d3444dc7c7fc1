"""The `rt` command line: each command lives in its own module under `rt_middleware.cli`."""

from __future__ import annotations

import importlib
import pkgutil

from rt_middleware.cli.app import app

__all__ = ["app", "main"]

_NOT_COMMANDS = {"app", "common"}


def _register_commands() -> None:
    """Import every sibling module: each registers its commands on `app` (heavy imports stay inside)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_commands()


def main() -> None:
    app()
