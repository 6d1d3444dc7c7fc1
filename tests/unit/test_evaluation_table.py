"""The vectorised decision rule equals `decide`, and table re-biasing equals `with_bias`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware.decision import decide
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import ConfigError
from rt_middleware.evaluation import ARGMAX, NEVER, ProbabilityTable, rules_of
from rt_middleware.policy import CategoryRule, TenantPolicy
from rt_middleware.tokens import COCONOT_CATEGORIES, RESPOND

NAMES = (RESPOND, *COCONOT_CATEGORIES)


def _distribution(logits: list[float]) -> FirstTokenDistribution:
    weights = [math.exp(x) for x in logits]
    total = sum(weights)
    probs = {name: w / total for name, w in zip(NAMES, weights[: len(NAMES)], strict=True)}
    return FirstTokenDistribution(probabilities=probs, rest=weights[-1] / total)


rule_strategy = st.one_of(
    st.none(),
    st.builds(CategoryRule, action=st.just("respond")),
    st.builds(CategoryRule, action=st.just("refuse"), threshold=st.none() | st.floats(0, 1)),
    st.builds(
        CategoryRule, action=st.just("route"), route=st.just("r"), threshold=st.none() | st.floats(0, 1)
    ),
)
policy_strategy = st.builds(
    lambda rules, bias: TenantPolicy(
        categories={c: r for c, r in zip(COCONOT_CATEGORIES, rules, strict=True) if r is not None},
        logit_bias=bias,
    ),
    st.lists(rule_strategy, min_size=5, max_size=5),
    st.dictionaries(st.sampled_from(NAMES), st.floats(-5, 5), max_size=3),
)
rows_strategy = st.lists(
    st.lists(
        st.floats(-8, 8) | st.sampled_from([0.0, 1.0]), min_size=len(NAMES) + 1, max_size=len(NAMES) + 1
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, policy=policy_strategy)
def test_vectorised_refusal_equals_decide(rows: list[list[float]], policy: TenantPolicy) -> None:
    dists = [_distribution(r) for r in rows]
    table = ProbabilityTable.from_distributions(dists)
    expected = [decide(d.with_bias(policy.logit_bias), policy).action != "respond" for d in dists]
    assert table.refused_under(policy).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, bias=st.dictionaries(st.sampled_from(NAMES), st.floats(-30, 30), min_size=1))
def test_table_bias_equals_distribution_bias(rows: list[list[float]], bias: dict[str, float]) -> None:
    dists = [_distribution(r) for r in rows]
    table = ProbabilityTable.from_distributions(dists).with_bias(bias)
    expected = ProbabilityTable.from_distributions([d.with_bias(bias) for d in dists])
    np.testing.assert_allclose(table.probs, expected.probs, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(table.rest, expected.rest, rtol=1e-12, atol=1e-300)


def test_rules_of_maps_policy_rules() -> None:
    policy = TenantPolicy(
        categories={
            COCONOT_CATEGORIES[0]: CategoryRule(threshold=0.3),
            COCONOT_CATEGORIES[1]: CategoryRule(action="respond"),
            COCONOT_CATEGORIES[2]: CategoryRule(),
        }
    )
    rules = rules_of(policy, COCONOT_CATEGORIES)
    assert rules[COCONOT_CATEGORIES[0]] == 0.3
    assert rules[COCONOT_CATEGORIES[1]] == NEVER
    assert rules[COCONOT_CATEGORIES[2]] == ARGMAX
    assert rules[COCONOT_CATEGORIES[4]] == ARGMAX  # left out of the policy: argmax, as in decide


def test_table_errors_are_typed() -> None:
    with pytest.raises(ConfigError, match="no distributions"):
        ProbabilityTable.from_distributions([])
    a = FirstTokenDistribution(probabilities={"respond": 0.5, "refuse": 0.5})
    b = FirstTokenDistribution(probabilities={"respond": 0.5, "other": 0.5})
    with pytest.raises(ConfigError, match="different decision tokens"):
        ProbabilityTable.from_distributions([a, b])
    table = ProbabilityTable.from_distributions([a])
    with pytest.raises(ConfigError, match="unknown decision"):
        table.column("nope")
    with pytest.raises(ConfigError, match="unknown decision tokens"):
        table.with_bias({"nope": 1.0})
