"""Per-tenant refusal policies (pydantic), validated at load with the offending field named."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rt_middleware.errors import MissingTenantError, PolicyError, UnknownTenantError
from rt_middleware.tokens import RESPOND

__all__ = ["CategoryRule", "PolicyFile", "PolicyStore", "TenantPolicy"]

DEFAULT_REFUSAL_MESSAGE = "I'm sorry, but I can't help with that request."


class CategoryRule(BaseModel):
    """What to do when a refusal category is detected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["refuse", "route", "respond"] = "refuse"
    """refuse: answer with `message`; route: hand the input to the runnable named `route`;
    respond: never refuse for this category (the model is forced to `[respond]`)."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Refuse/route when this category's probability is >= threshold. None: only when the
    category is the model's own argmax over the decision tokens (the paper's default)."""
    message: str | None = None
    """The refusal text; None uses the tenant's `refusal_message`."""
    route: str | None = None
    """Name of the runnable in the router's `routes` (action route only)."""

    @model_validator(mode="after")
    def _route_matches_action(self) -> CategoryRule:
        if self.action == "route" and not self.route:
            raise ValueError("action 'route' needs a 'route' name")
        if self.action != "route" and self.route is not None:
            raise ValueError(f"'route' is only allowed with action 'route', not {self.action!r}")
        if self.action == "respond" and self.threshold is not None:
            raise ValueError("action 'respond' takes no threshold")
        return self


class TenantPolicy(BaseModel):
    """One tenant's policy: a rule per category, a temperature and first-step logit biases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    """Softmax temperature of the first-token distribution (decision only)."""
    fail_mode: Literal["closed", "open"] = "closed"
    """closed: refuse when the backend fails; open: answer without a decision."""
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    """Category name -> rule. A category left out follows the model's own argmax choice."""
    logit_bias: dict[str, float] = Field(default_factory=dict)
    """Category name or ``respond`` -> bias added to that token's logit at the first step only."""
    refusal_message: str = DEFAULT_REFUSAL_MESSAGE
    """Message of refusals whose rule sets none (and of fail-closed refusals)."""
    max_new_tokens: int | None = Field(default=None, gt=0)
    """Cap on the continuation length; None uses the router's."""

    @field_validator("logit_bias")
    @classmethod
    def _finite_bias(cls, value: dict[str, float]) -> dict[str, float]:
        for key, bias in value.items():
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"bias for {key!r} must be within [-100, 100], got {bias}")
        return value

    def rule_for(self, category: str) -> CategoryRule | None:
        return self.categories.get(category)

    def check_names(self, categories: Iterable[str], routes: Iterable[str] | None = None) -> None:
        """Raise PolicyError unless every category, bias key and route name is known."""
        known = set(categories)
        for name in self.categories:
            if name not in known:
                raise PolicyError(
                    f"categories: unknown category {name!r}; known: {sorted(known)}",
                    field=f"categories.{name}",
                )
        for name in self.logit_bias:
            if name != RESPOND and name not in known:
                raise PolicyError(
                    f"logit_bias: unknown key {name!r}; use 'respond' or one of {sorted(known)}",
                    field=f"logit_bias.{name}",
                )
        if routes is not None:
            route_names = set(routes)
            for name, rule in self.categories.items():
                if rule.action == "route" and rule.route not in route_names:
                    raise PolicyError(
                        f"categories.{name}.route: no route named {rule.route!r}; the router has "
                        f"{sorted(route_names) or 'no routes'}",
                        field=f"categories.{name}.route",
                    )


class PolicyFile(BaseModel):
    """The on-disk shape of a policy file (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str | None = None
    """Shown in every decision; None derives a content hash."""
    default_tenant: str | None = None
    """Tenant used when a request names none or an unknown one; None makes both errors."""
    tenants: dict[str, TenantPolicy]

    @model_validator(mode="after")
    def _default_exists(self) -> PolicyFile:
        if not self.tenants:
            raise ValueError("at least one tenant is required")
        if self.default_tenant is not None and self.default_tenant not in self.tenants:
            raise ValueError(f"default_tenant {self.default_tenant!r} is not among the tenants")
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _parse(data: Any, source: str) -> PolicyFile:
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _field_path(first["loc"]) or "<root>"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PolicyError(f"invalid policy in {source}: {path}: {first['msg']}{more}", field=path) from exc


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc


def _content_version(parsed: PolicyFile) -> str:
    blob = json.dumps(parsed.model_dump(mode="json"), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:12]


class PolicyStore:
    """Many tenants' policies; a reload swaps them atomically or not at all."""

    def __init__(self, parsed: PolicyFile, *, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._categories: frozenset[str] | None = None
        self._routes: frozenset[str] | None = None
        self._state = (parsed, parsed.version or _content_version(parsed))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyStore:
        return cls(_parse(data, "dict"))

    @classmethod
    def from_file(cls, path: str | Path) -> PolicyStore:
        path = Path(path)
        return cls(_parse(_read(path), str(path)), path=path)

    @classmethod
    def default(cls) -> PolicyStore:
        """The policy file shipped with the package (tenants for the CoCoNot default model)."""
        from importlib.resources import as_file, files

        with as_file(files("rt_middleware") / "data" / "default_policy.yaml") as path:
            return cls.from_file(path)

    @classmethod
    def single(cls, tenant: str = "default", policy: TenantPolicy | None = None) -> PolicyStore:
        """One tenant that is also the default: handy for scripts and tests."""
        return cls(PolicyFile(default_tenant=tenant, tenants={tenant: policy or TenantPolicy()}))

    @property
    def version(self) -> str:
        return self._state[1]

    @property
    def default_tenant(self) -> str | None:
        return self._state[0].default_tenant

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(self._state[0].tenants)

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self, tenant_id: str | None) -> TenantPolicy:
        return self.resolve(tenant_id)[1]

    def resolve(self, tenant_id: str | None) -> tuple[str, TenantPolicy, str]:
        """(tenant actually used, its policy, policy version) for a request's tenant id."""
        parsed, version = self._state
        if tenant_id is None:
            if parsed.default_tenant is None:
                raise MissingTenantError(
                    "no tenant_id given (pass config={'configurable': {'tenant_id': ...}}) and the "
                    "policy store has no default_tenant"
                )
            return parsed.default_tenant, parsed.tenants[parsed.default_tenant], version
        policy = parsed.tenants.get(tenant_id)
        if policy is not None:
            return tenant_id, policy, version
        if parsed.default_tenant is not None:
            return parsed.default_tenant, parsed.tenants[parsed.default_tenant], version
        raise UnknownTenantError(f"unknown tenant {tenant_id!r}", tenant_id=tenant_id)

    def require(self, *, categories: Iterable[str], routes: Iterable[str] | None = None) -> None:
        """Check every tenant against a model's categories and a router's routes, now and on reload."""
        cats = frozenset(categories)
        route_set = None if routes is None else frozenset(routes)
        self._check(self._state[0], cats, route_set)
        with self._lock:
            self._categories = cats if self._categories is None else self._categories & cats
            if route_set is not None:
                self._routes = route_set if self._routes is None else self._routes & route_set

    @staticmethod
    def _check(parsed: PolicyFile, cats: frozenset[str] | None, routes: frozenset[str] | None) -> None:
        if cats is None:
            return
        for tenant, policy in parsed.tenants.items():
            try:
                policy.check_names(cats, routes)
            except PolicyError as exc:
                field = f"tenants.{tenant}.{exc.field}"
                raise PolicyError(f"tenants.{tenant}.{exc}", field=field) from None

    def replace(self, data: Mapping[str, Any] | PolicyFile) -> str:
        """Validate and swap in new policies; on any error the old ones stay. Returns the version."""
        parsed = data if isinstance(data, PolicyFile) else _parse(data, "dict")
        return self._swap(parsed)

    def reload(self) -> str:
        """Re-read the file this store came from; atomic, and the old policies stay on error."""
        if self._path is None:
            raise PolicyError("this PolicyStore was not loaded from a file; use replace()")
        return self._swap(_parse(_read(self._path), str(self._path)))

    def _swap(self, parsed: PolicyFile) -> str:
        with self._lock:
            self._check(parsed, self._categories, self._routes)
            self._state = (parsed, parsed.version or _content_version(parsed))
            return self._state[1]

    def to_dict(self) -> dict[str, Any]:
        return self._state[0].model_dump(mode="json", exclude_none=True)

    def __repr__(self) -> str:
        return f"PolicyStore(tenants={list(self.tenants)}, version={self.version!r})"
