"""The one place that turns a missing optional dependency into an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from rt_middleware.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the extra that installs it.

    Only a ModuleNotFoundError for `module` itself (or its top package) is translated: a broken
    install of a present package surfaces as its own error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name not in (module, top):
            raise
        raise MissingExtraError(
            f"{feature} needs {package or top}. Install it with: pip install 'rt-middleware[{extra}]'"
        ) from None
