"""Where an agent run names its tenant: the runtime context first, then the run's `configurable`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.config import get_config

from rt_middleware.errors import InvalidInputError, MissingTenantError
from rt_middleware.policy import PolicyStore

__all__ = ["find_tenant", "require_tenant"]

_KEY = "tenant_id"


def _checked(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{source} must be a non-empty string, got {type(value).__name__}")
    return value


def _from_context(context: Any) -> str | None:
    if context is None:
        return None
    value = context.get(_KEY) if isinstance(context, Mapping) else getattr(context, _KEY, None)
    return _checked(value, "runtime.context.tenant_id")


def _from_run_config() -> str | None:
    try:
        config = get_config()
    except RuntimeError:  # called outside a LangGraph run
        return None
    return _checked((config.get("configurable") or {}).get(_KEY), "configurable.tenant_id")


def find_tenant(runtime: Any) -> str | None:
    """`runtime.context.tenant_id` (a `context_schema`), else `configurable.tenant_id`, else None."""
    return _from_context(getattr(runtime, "context", None)) or _from_run_config()


def require_tenant(runtime: Any, policies: PolicyStore) -> str | None:
    """The run's tenant; None only where the policy store has a default tenant to fall back on."""
    tenant = find_tenant(runtime)
    if tenant is None and policies.default_tenant is None:
        raise MissingTenantError(
            "no tenant for this agent run: invoke it with context=<your context_schema with a "
            "tenant_id> or config={'configurable': {'tenant_id': ...}}, or give the policy store a "
            "default_tenant"
        )
    return tenant
