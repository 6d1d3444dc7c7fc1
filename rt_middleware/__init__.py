"""rt-middleware: run-time, per-tenant control of an LLM's refusals with refusal tokens."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from rt_middleware.decision import Decision, decide
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import (
    BackendError,
    ConfigError,
    InvalidInputError,
    MissingExtraError,
    MissingTenantError,
    PolicyError,
    PromptTooLongError,
    RequestError,
    RTError,
    TokenSchemaError,
    UnknownTenantError,
)
from rt_middleware.messages import ChatMessage
from rt_middleware.policy import CategoryRule, PolicyStore, TenantPolicy
from rt_middleware.tokens import RefusalTokenSchema

if TYPE_CHECKING:
    from rt_middleware.default_model import load_default_backend
    from rt_middleware.loading import load_backend
    from rt_middleware.router import RefusalRouter

try:
    __version__ = version("rt-middleware")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BackendError",
    "CategoryRule",
    "ChatMessage",
    "ConfigError",
    "Decision",
    "FirstTokenDistribution",
    "InvalidInputError",
    "MissingExtraError",
    "MissingTenantError",
    "PolicyError",
    "PolicyStore",
    "PromptTooLongError",
    "RTError",
    "RefusalRouter",
    "RefusalTokenSchema",
    "RequestError",
    "TenantPolicy",
    "TokenSchemaError",
    "UnknownTenantError",
    "__version__",
    "decide",
    "load_backend",
    "load_default_backend",
]

_LAZY = {
    "RefusalRouter": "rt_middleware.router",
    "load_backend": "rt_middleware.loading",
    "load_default_backend": "rt_middleware.default_model",
}


def __getattr__(name: str) -> Any:
    """The router (LangChain) and model loading import on first use: `import rt_middleware` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_middleware' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
