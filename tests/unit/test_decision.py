from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware import Decision, FirstTokenDistribution, TenantPolicy, decide
from rt_middleware.decision import fail_decision
from rt_middleware.tokens import COCONOT_CATEGORIES

CATS = COCONOT_CATEGORIES


def dist(respond: float, **cats: float) -> FirstTokenDistribution:
    probs = {"respond": respond, **{c: 0.0 for c in CATS}}
    for key, value in cats.items():
        probs[CATS[int(key[1:])]] = value
    return FirstTokenDistribution(probabilities=probs, rest=max(0.0, 1 - sum(probs.values())))


def policy(**rules: dict) -> TenantPolicy:
    return TenantPolicy.model_validate({"categories": {CATS[int(k[1:])]: v for k, v in rules.items()}})


def test_threshold_refuses_at_or_above() -> None:
    p = policy(c0={"action": "refuse", "threshold": 0.3, "message": "no"})
    d = decide(dist(0.6, c0=0.3), p, tenant="t", policy_version="v1")
    assert (d.action, d.category, d.threshold, d.message, d.reason) == ("refuse", CATS[0], 0.3, "no", "threshold")
    assert d.tenant == "t" and d.policy_version == "v1"
    assert decide(dist(0.7, c0=0.29), p).action == "respond"


def test_most_probable_candidate_wins_and_routes() -> None:
    p = policy(
        c0={"action": "refuse", "threshold": 0.1},
        c1={"action": "route", "threshold": 0.1, "route": "clarify"},
    )
    d = decide(dist(0.3, c0=0.2, c1=0.4), p)
    assert (d.action, d.category, d.route, d.token) == ("route", CATS[1], "clarify", CATS[1])
    d = decide(dist(0.3, c0=0.5, c1=0.15), p)
    assert (d.action, d.category) == ("refuse", CATS[0])


def test_left_out_and_thresholdless_categories_follow_the_argmax() -> None:
    p = policy(c0={"action": "refuse"})  # no threshold; c1..c4 left out
    assert decide(dist(0.2, c0=0.5), p).reason == "argmax"
    assert decide(dist(0.6, c0=0.3), p).action == "respond"
    d = decide(dist(0.2, c3=0.7), p)  # a left-out category that is the argmax refuses too
    assert (d.action, d.category, d.message) == ("refuse", CATS[3], p.refusal_message)


def test_respond_action_never_refuses() -> None:
    p = policy(c0={"action": "respond"})
    d = decide(dist(0.01, c0=0.98), p)
    assert (d.action, d.token) == ("respond", "respond")


def test_to_dict_is_json_ready() -> None:
    d = decide(dist(0.1, c0=0.8), TenantPolicy())
    data = d.to_dict()
    assert data["action"] == "refuse" and data["probabilities"][CATS[0]] == 0.8
    assert set(data) >= {"action", "category", "probabilities", "threshold", "tenant", "policy_version"}


def test_fail_modes() -> None:
    closed = fail_decision(TenantPolicy(), tenant="t", policy_version="v", error=RuntimeError("x"))
    assert closed.action == "refuse" and closed.reason == "backend_error"
    opened = fail_decision(
        TenantPolicy(fail_mode="open"), tenant="t", policy_version="v", error=RuntimeError("x")
    )
    assert opened.action == "respond" and opened.extras["error"] == "RuntimeError"


probabilities = st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6).map(
    lambda xs: [x / (sum(xs) + 1e-9) for x in xs]
)
thresholds = st.floats(0.0, 1.0)


def as_dist(ps: list[float]) -> FirstTokenDistribution:
    return FirstTokenDistribution(
        probabilities={"respond": ps[0], **dict(zip(CATS, ps[1:], strict=True))},
        rest=max(0.0, 1 - sum(ps)),
    )


@settings(max_examples=200, deadline=None)
@given(ps=probabilities, category=st.sampled_from(CATS), low=thresholds, high=thresholds,
       others=st.lists(thresholds, min_size=5, max_size=5))
def test_raising_a_threshold_never_increases_its_refusals(
    ps: list[float], category: str, low: float, high: float, others: list[float]
) -> None:
    low, high = sorted((low, high))
    rules = {c: {"action": "refuse", "threshold": t} for c, t in zip(CATS, others, strict=True)}
    at_low = TenantPolicy.model_validate({"categories": {**rules, category: {"action": "refuse", "threshold": low}}})
    at_high = TenantPolicy.model_validate({"categories": {**rules, category: {"action": "refuse", "threshold": high}}})
    d_low, d_high = decide(as_dist(ps), at_low), decide(as_dist(ps), at_high)
    assert not (d_high.category == category and d_low.category != category)
    assert not (d_high.refused and not d_low.refused)


@settings(max_examples=200, deadline=None)
@given(ps=probabilities, thresholds_=st.lists(thresholds, min_size=5, max_size=5))
def test_decision_is_a_candidate_or_respond(ps: list[float], thresholds_: list[float]) -> None:
    p = TenantPolicy.model_validate(
        {"categories": {c: {"action": "refuse", "threshold": t} for c, t in zip(CATS, thresholds_, strict=True)}}
    )
    d: Decision = decide(as_dist(ps), p)
    fired = [c for c, t in zip(CATS, thresholds_, strict=True) if d.probabilities[c] >= t]
    if not fired:
        assert d.action == "respond"
    else:
        assert d.category in fired
        assert d.probabilities[d.category] == pytest.approx(max(d.probabilities[c] for c in fired))
