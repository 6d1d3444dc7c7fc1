"""The decision rule: a pure function of a first-token distribution and a tenant policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.policy import TenantPolicy
from rt_middleware.tokens import RESPOND

__all__ = ["Action", "Decision", "decide", "fail_decision"]

Action = Literal["refuse", "route", "respond"]


@dataclass(frozen=True)
class Decision:
    """What the router does with a request, and why (probabilities are post temperature/bias)."""

    action: Action
    category: str | None
    probabilities: Mapping[str, float]
    threshold: float | None
    tenant: str
    policy_version: str
    message: str | None = None
    """The refusal text (action refuse)."""
    route: str | None = None
    """The route name (action route)."""
    token: str = RESPOND
    """Decision name whose token the continuation starts with: the category, or ``respond``."""
    reason: str = "threshold"
    """threshold | argmax | no_candidate | backend_error: which branch of the rule decided."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    requested_tenant: str | None = None
    """The tenant id the request named, when another tenant served it (``unknown_tenant: default``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "probabilities", MappingProxyType(dict(self.probabilities)))
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))

    @property
    def refused(self) -> bool:
        return self.action == "refuse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "category": self.category,
            "probabilities": dict(self.probabilities),
            "threshold": self.threshold,
            "tenant": self.tenant,
            "policy_version": self.policy_version,
            "message": self.message,
            "route": self.route,
            "token": self.token,
            "reason": self.reason,
            **({"extras": dict(self.extras)} if self.extras else {}),
            **({"requested_tenant": self.requested_tenant} if self.requested_tenant is not None else {}),
        }


def decide(
    distribution: FirstTokenDistribution,
    policy: TenantPolicy,
    *,
    tenant: str = "",
    policy_version: str = "",
) -> Decision:
    """Apply a tenant's policy to a first-token distribution.

    Candidates are the categories whose action is refuse or route and that fire: probability >=
    threshold, or (no threshold, or a category the policy leaves out) the category is the argmax
    over all decision tokens. The most probable candidate wins; with none the model responds.
    """
    probs = distribution.probabilities
    top = distribution.argmax()
    candidates: list[tuple[float, str, float | None]] = []
    for category in distribution.categories:
        rule = policy.rule_for(category)
        if rule is not None and rule.action == "respond":
            continue
        threshold = rule.threshold if rule is not None else None
        fires = probs[category] >= threshold if threshold is not None else top == category
        if fires:
            candidates.append((probs[category], category, threshold))
    common: dict[str, Any] = {"probabilities": probs, "tenant": tenant, "policy_version": policy_version}
    if not distribution.exact:  # a served engine gave estimates (backends/openai_compat.py)
        common["extras"] = {"exact": False, "bounds": {k: list(v) for k, v in (distribution.bounds or {}).items()}}
    if not candidates:
        return Decision(action="respond", category=None, threshold=None, reason="no_candidate", **common)
    _, category, threshold = max(candidates, key=lambda c: (c[0], c[1] == top))
    rule = policy.rule_for(category)
    reason = "argmax" if threshold is None else "threshold"
    if rule is not None and rule.action == "route":
        return Decision(
            action="route", category=category, threshold=threshold, route=rule.route,
            token=category, reason=reason, **common,
        )
    message = rule.message if rule is not None and rule.message is not None else policy.refusal_message
    return Decision(
        action="refuse", category=category, threshold=threshold, message=message,
        token=category, reason=reason, **common,
    )


def fail_decision(
    policy: TenantPolicy, *, tenant: str, policy_version: str, error: BaseException
) -> Decision:
    """The decision taken when the backend fails: refuse (fail closed) or respond (fail open)."""
    extras = {"error": type(error).__name__}
    if policy.fail_mode == "open":
        return Decision(
            action="respond", category=None, probabilities={}, threshold=None, tenant=tenant,
            policy_version=policy_version, reason="backend_error", extras=extras,
        )
    return Decision(
        action="refuse", category=None, probabilities={}, threshold=None, tenant=tenant,
        policy_version=policy_version, message=policy.refusal_message, reason="backend_error",
        extras=extras,
    )
