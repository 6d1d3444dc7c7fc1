"""Per-tenant refusal policies (pydantic), validated at load with the offending field named."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rt_middleware._policy_loading import load_policy_text
from rt_middleware.errors import InvalidInputError, MissingTenantError, PolicyError, UnknownTenantError
from rt_middleware.messages import DecideOn
from rt_middleware.tokens import RESPOND, category_alias, resolve_category

__all__ = ["MIN_TEMPERATURE", "CategoryRule", "PolicyFile", "PolicyStore", "TenantPolicy"]

logger = logging.getLogger(__name__)

DEFAULT_REFUSAL_MESSAGE = "I'm sorry, but I can't help with that request."
MIN_TEMPERATURE = 0.01
"""Lowest accepted policy temperature: logits / temperature stays finite for any real model."""
_MAX_ERROR_CHARS = 300


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _with_aliases(value: Any, what: str) -> Any:
    """Map short category aliases (``safety``) to full names; an alias and its full name together
    (or twice) is a duplicate key."""
    if not isinstance(value, Mapping):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        full = resolve_category(key) if isinstance(key, str) else key
        if full in out:
            raise ValueError(f"{what}: {full!r} is given twice (as {key!r} and as an alias or full name)")
        out[full] = item
    return out


class CategoryRule(BaseModel):
    """What to do when a refusal category is detected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    action: Literal["refuse", "route", "respond"] = "refuse"
    """refuse: answer with `message`; route: hand the input to the runnable named `route`;
    respond: never refuse for this category (the model is forced to `[respond]`)."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
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

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    temperature: float = Field(default=1.0, ge=MIN_TEMPERATURE, le=100.0, allow_inf_nan=False)
    """Softmax temperature of the first-token distribution (decision only), in [0.01, 100]."""
    decide_on: DecideOn = "last_turn"
    """What the decision reads: ``last_turn`` = system prompt(s) + the latest user message (one
    refused turn does not poison the next); ``conversation`` = the whole history (keeps multi-turn
    attacks in view). With history under ``last_turn`` the answer costs a second prefill."""
    fail_mode: Literal["closed", "open"] = "closed"
    """closed: refuse when the backend fails; open: answer without a decision."""
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    """Category name -> rule. A category left out follows the model's own argmax choice."""
    logit_bias: dict[str, float] = Field(default_factory=dict)
    """Category name or ``respond`` -> bias added to that token's logit at the first step only."""
    refusal_message: str = DEFAULT_REFUSAL_MESSAGE
    """Message of refusals whose rule sets none (and of fail-closed refusals)."""
    max_new_tokens: int | None = Field(default=None, gt=0)
    """Cap on the continuation length: min(caller's limit, this); None leaves the caller's."""

    @field_validator("categories", mode="before")
    @classmethod
    def _category_aliases(cls, value: Any) -> Any:
        return _with_aliases(value, "categories")

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _bias_aliases(cls, value: Any) -> Any:
        return _with_aliases(value, "logit_bias")

    def cap_tokens(self, requested: int) -> int:
        """The continuation length for a caller asking `requested`: the policy's cap wins if lower."""
        return requested if self.max_new_tokens is None else min(requested, self.max_new_tokens)

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
                    f"categories: unknown category {name!r}; known: {_known_names(known)}",
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


def _known_names(known: Iterable[str]) -> str:
    """Known category names, each with its short alias where it has one."""
    names = []
    for name in sorted(known):
        alias = category_alias(name)
        names.append(f"{name!r} ({alias})" if alias else repr(name))
    return "[" + ", ".join(names) + "]"


class PolicyFile(BaseModel):
    """The on-disk shape of a policy file (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: str | None = None
    """Shown in every decision; None derives a content hash."""
    default_tenant: str | None = None
    """Tenant serving requests that carry no tenant id; None makes such requests an error."""
    unknown_tenant: Literal["reject", "default"] = "reject"
    """A tenant id the file does not list: ``reject`` raises UnknownTenantError; ``default`` serves
    it with `default_tenant` (logged at INFO, recorded in the decision as `requested_tenant`)."""
    tenants: dict[str, TenantPolicy]

    @field_validator("version", mode="before")
    @classmethod
    def _numeric_version(cls, value: Any) -> Any:
        # `version: 3` in YAML is an int; a version is a label, so accept whole numbers as text. A
        # float is refused: YAML has already turned 1.10 into 1.1, so its text is lost
        if isinstance(value, float):
            raise ValueError(f"version {value!r} was read as a number; quote it (version: \"...\") to keep its text")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _default_exists(self) -> PolicyFile:
        if not self.tenants:
            raise ValueError("at least one tenant is required")
        if self.default_tenant is not None and self.default_tenant not in self.tenants:
            raise ValueError(f"default_tenant {_short(self.default_tenant)} is not among the tenants")
        if self.unknown_tenant == "default" and self.default_tenant is None:
            raise ValueError("unknown_tenant: default needs a default_tenant")
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _truncate(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(data: Any, source: str) -> PolicyFile:
    if isinstance(data, PolicyFile):
        return data
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"invalid policy in {source}: the top level must be a mapping with 'tenants', got "
            f"{type(data).__name__}",
            field="<root>",
        )
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        path = _truncate(_field_path(first["loc"]) or "<root>", 160)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        # `from None`: pydantic's error holds the input, which may be huge; the message says it all
        raise PolicyError(_truncate(f"invalid policy in {source}: {path}: {first['msg']}") + more, field=path) from None
    except RecursionError:
        raise PolicyError(f"invalid policy in {source}: nested too deeply") from None


def _read(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    return load_policy_text(raw, str(path), as_json=path.suffix.lower() == ".json")


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
    def from_text(cls, text: str | bytes, *, as_json: bool = False, source: str = "<text>") -> PolicyStore:
        """Parse a policy document (YAML, or JSON with `as_json`) with the same checks as files."""
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        return cls(_parse(load_policy_text(raw, source, as_json=as_json), source))

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
    def unknown_tenant(self) -> str:
        return self._state[0].unknown_tenant

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(self._state[0].tenants)

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self, tenant_id: str | None) -> TenantPolicy:
        return self.resolve(tenant_id)[1]

    def resolve(self, tenant_id: str | None) -> tuple[str, TenantPolicy, str]:
        """(tenant actually used, its policy, policy version) for a request's tenant id.

        No tenant id: the `default_tenant` (else MissingTenantError). An id the file does not list:
        UnknownTenantError, unless the file says ``unknown_tenant: default``.
        """
        parsed, version = self._state  # one read: tenant, policy and version from one snapshot
        if tenant_id is None:
            if parsed.default_tenant is None:
                raise MissingTenantError(
                    "no tenant_id given (pass config={'configurable': {'tenant_id': ...}}) and the "
                    "policy store has no default_tenant"
                )
            return parsed.default_tenant, parsed.tenants[parsed.default_tenant], version
        if not isinstance(tenant_id, str):
            raise InvalidInputError(
                f"tenant_id must be a str or None, got {type(tenant_id).__name__}"
            )
        policy = parsed.tenants.get(tenant_id)
        if policy is not None:
            return tenant_id, policy, version
        if parsed.unknown_tenant == "default" and parsed.default_tenant is not None:
            logger.info(
                "unknown tenant %s served by default tenant %r (unknown_tenant: default)",
                _short(tenant_id), parsed.default_tenant,
                extra={"tenant": parsed.default_tenant, "requested_tenant": tenant_id[:200],
                       "policy_version": version},
            )
            return parsed.default_tenant, parsed.tenants[parsed.default_tenant], version
        raise UnknownTenantError(
            f"unknown tenant {_short(tenant_id)}"
            + ("" if parsed.default_tenant is None else
               " (the default tenant serves only requests without a tenant id; set "
               "'unknown_tenant: default' in the policy file to serve unknown ids with it)"),
            tenant_id=tenant_id,
        )

    def require(self, *, categories: Iterable[str], routes: Iterable[str] | None = None) -> None:
        """Check every tenant against a model's categories and a router's routes, now and on reload."""
        cats = frozenset(categories)
        route_set = None if routes is None else frozenset(routes)
        with self._lock:  # the state checked is the state bound: no replace() in between
            self._check(self._state[0], cats, route_set)
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
        version = parsed.version or _content_version(parsed)
        with self._lock:
            old = self._state[1]
            self._check(parsed, self._categories, self._routes)
            self._state = (parsed, version)
        logger.info(
            "policies reloaded: version %s -> %s (%d tenants)", old, version, len(parsed.tenants),
            extra={"policy_version": version, "previous_version": old},
        )
        return version

    def to_dict(self) -> dict[str, Any]:
        return self._state[0].model_dump(mode="json", exclude_none=True)

    def __repr__(self) -> str:
        return f"PolicyStore(tenants={list(self.tenants)}, version={self.version!r})"
