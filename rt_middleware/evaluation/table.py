"""Many first-token distributions as one matrix, with the decision rule vectorised over it.

Sweeps and calibration evaluate thousands of (threshold, prompt) pairs; `decide` on each would be
slow, so `ProbabilityTable.fires` re-states the rule of `rt_middleware.decision.decide` in numpy.
Refused-or-not is what matters here, and under that rule a prompt is refused (or routed) exactly
when at least one category fires, whichever wins; tests pin the equivalence to `decide`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rt_middleware.distribution import FirstTokenDistribution, apply_first_step_bias, check_bias_names
from rt_middleware.errors import ConfigError
from rt_middleware.policy import TenantPolicy
from rt_middleware.tokens import RESPOND

__all__ = ["ARGMAX", "NEVER", "ProbabilityTable", "Rule", "rules_of"]

ARGMAX = "argmax"
"""A category fires when it is the argmax over all decision tokens (no threshold in the policy)."""
NEVER = "never"
"""A category never fires (action respond)."""

Rule = float | str
"""A threshold, `ARGMAX` or `NEVER`: how one category fires."""


def rules_of(policy: TenantPolicy, categories: Sequence[str]) -> dict[str, Rule]:
    """Each category's firing rule under `policy`, in the shape `ProbabilityTable.fires` takes."""
    out: dict[str, Rule] = {}
    for category in categories:
        rule = policy.rule_for(category)
        if rule is not None and rule.action == "respond":
            out[category] = NEVER
        elif rule is None or rule.threshold is None:
            out[category] = ARGMAX
        else:
            out[category] = rule.threshold
    return out


@dataclass(frozen=True)
class ProbabilityTable:
    """Decision-token probabilities of n prompts: `probs[i, j]` is p(names[j]) for prompt i."""

    names: tuple[str, ...]
    probs: np.ndarray
    rest: np.ndarray

    @classmethod
    def from_distributions(cls, distributions: Sequence[FirstTokenDistribution]) -> ProbabilityTable:
        if not distributions:
            raise ConfigError("no distributions to tabulate")
        names = tuple(distributions[0].probabilities)
        for dist in distributions:
            if tuple(dist.probabilities) != names:
                raise ConfigError("distributions with different decision tokens cannot share a table")
        probs = np.array([[d.probabilities[n] for n in names] for d in distributions], dtype=np.float64)
        rest = np.array([d.rest for d in distributions], dtype=np.float64)
        return cls(names=names, probs=probs, rest=rest)

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != RESPOND)

    def column(self, name: str) -> np.ndarray:
        try:
            return self.probs[:, self.names.index(name)]
        except ValueError:
            raise ConfigError(f"unknown decision name {name!r}; known: {', '.join(self.names)}") from None

    def subset(self, mask: np.ndarray) -> ProbabilityTable:
        return ProbabilityTable(names=self.names, probs=self.probs[mask], rest=self.rest[mask])

    def with_bias(self, bias: Mapping[str, float]) -> ProbabilityTable:
        """Exact re-biasing of every row (`rt_middleware.distribution.apply_first_step_bias`)."""
        if not any(bias.values()):
            check_bias_names(self.names, bias)
            return self
        probs, rest = apply_first_step_bias(self.names, self.probs, self.rest, bias)
        return ProbabilityTable(names=self.names, probs=probs, rest=rest)

    def fires(self, rules: Mapping[str, Rule]) -> np.ndarray:
        """Boolean (n, categories) matrix: does each category fire on each prompt.

        A category missing from `rules` follows the argmax rule, as in `decide`.
        """
        top = np.argmax(self.probs, axis=1)  # first maximum, like max() over the dict in decide
        columns = []
        for category in self.categories:
            j = self.names.index(category)
            rule = rules.get(category, ARGMAX)
            if rule == NEVER:
                columns.append(np.zeros(len(self), dtype=bool))
            elif rule == ARGMAX:
                columns.append(top == j)
            else:
                columns.append(self.probs[:, j] >= float(rule))
        return np.stack(columns, axis=1) if columns else np.zeros((len(self), 0), dtype=bool)

    def refused(self, rules: Mapping[str, Rule]) -> np.ndarray:
        """Refuse-or-route per prompt: true when any category fires."""
        return self.fires(rules).any(axis=1)

    def refused_under(self, policy: TenantPolicy) -> np.ndarray:
        """Refused per prompt under a whole policy (its bias applied to these unbiased rows)."""
        return self.with_bias(policy.logit_bias).refused(rules_of(policy, self.categories))
