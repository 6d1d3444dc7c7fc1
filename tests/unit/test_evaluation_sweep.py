"""Threshold sweep, ROC and isolation on hand-made probability tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rt_middleware.errors import ConfigError
from rt_middleware.evaluation import (
    ARGMAX,
    NEVER,
    ProbabilityTable,
    isolation,
    isolation_band,
    roc_curve,
    sweep_own_thresholds,
    sweep_thresholds,
)
from rt_middleware.evaluation.metrics import rank_auc
from rt_middleware.evaluation.sweep import common_refusal_score

NAMES = ("respond", "a", "b")


def table(rows: list[list[float]]) -> ProbabilityTable:
    probs = np.array(rows, dtype=float)
    return ProbabilityTable(names=NAMES, probs=probs, rest=1 - probs.sum(axis=1))


def test_sweep_rates_by_common_threshold() -> None:
    t = table([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.5, 0.1, 0.4]])
    labels = ["a", "a", "respond", "b"]
    sweep = sweep_thresholds(t, labels, {"a": 0.5, "b": 0.5}, grid=np.array([0.0, 0.2, 0.35, 0.9]))
    assert sweep.rates["a"].tolist() == [1.0, 1.0, 0.5, 0.0]
    assert sweep.rates["b"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert sweep.rates["respond"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert list(sweep.rates) == ["a", "b", "respond"]
    never_b = sweep_thresholds(t, labels, {"b": NEVER}, grid=np.array([0.35]))
    assert never_b.rates["b"].tolist() == [0.0]  # b's 0.4 is ignored: b never fires


def test_roc_hand_example_and_auc() -> None:
    # scores (max category prob): positives 0.8, 0.3; negatives 0.05, 0.4
    t = table([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.5, 0.1, 0.4]])
    roc = roc_curve(t, ["a", "b", "respond", "respond"], {"a": 0.5, "b": 0.5})
    assert roc.tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert roc.fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc.auc == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ranked right
    assert roc.to_dict()["thresholds"][0] is None  # the +inf start is JSON-safe
    with pytest.raises(ConfigError, match="both should-refuse and should-answer"):
        roc_curve(t, ["a"] * 4, {})


@settings(max_examples=60, deadline=None)
@given(
    probs=st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5]), st.sampled_from([0.0, 0.1, 0.25, 0.5])),
        min_size=2,
        max_size=30,
    ),
    positives=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_rank_auc_equals_the_roc_curve_area(probs: list[tuple[float, float]], positives: list[bool]) -> None:
    """The bootstrap-friendly Mann-Whitney AUC and the curve's trapezoid agree, ties included."""
    labels = ["a" if p else "respond" for p in positives[: len(probs)]]
    assume("a" in labels and "respond" in labels)
    t = table([[1.0 - a - b, a, b] for a, b in probs])
    score = common_refusal_score(t, {})
    truth = np.array([label != "respond" for label in labels])
    assert rank_auc(score, truth) == pytest.approx(roc_curve(t, labels, {}).auc)
    assert rank_auc(score, np.zeros_like(truth)) is None


def test_isolation_counts_only_prompts_where_the_swept_category_alone_fires() -> None:
    t = table(
        [
            [0.1, 0.8, 0.1],  # a-labelled, a high
            [0.2, 0.6, 0.2],  # a-labelled
            [0.3, 0.3, 0.4],  # b-labelled, b fires at 0.35 anyway
            [0.5, 0.3, 0.2],  # b-labelled, only a could fire
            [0.9, 0.05, 0.05],  # respond
        ]
    )
    labels = ["a", "a", "b", "b", "respond"]
    row = isolation(t, labels, {"a": 0.5, "b": 0.35}, "a", (0.25, 1.0))
    assert row.own_rates == (1.0, 0.0)
    assert row.deltas == {"b": 0.5, "respond": 0.0}  # prompt 4 gains a refusal from a at t=0.25
    assert row.max_other_delta == 0.5
    assert row.to_dict()["delta_pp"]["b"] == 50.0
    assert isolation_band(t, labels, "a", 1.0) == 0.6
    assert isolation_band(t, labels, "a", 0.5) == 0.8
    with pytest.raises(ConfigError, match="band"):
        isolation(t, labels, {}, "a", (0.9, 0.1))
    with pytest.raises(ConfigError, match="coverage"):
        isolation_band(t, labels, "a", 0.0)
    with pytest.raises(ConfigError, match="no prompts labelled"):
        isolation_band(t, ["respond"] * 5, "a", 0.9)


def test_isolation_with_argmax_rule_for_other_category() -> None:
    t = table([[0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    row = isolation(t, ["b", "b"], {"b": ARGMAX}, "a", (0.25, 1.0))
    # b fires by argmax on the first prompt only; a at 0.25 adds the second (where a is the argmax)
    assert row.deltas == {"b": 0.5}
    assert row.own_rates[0] != row.own_rates[0]  # NaN: no prompts of the swept category
    assert row.to_dict()["own_rate_at_t_min"] != row.to_dict()["own_rate_at_t_min"]
    row_b = isolation(t, ["b", "b"], {"a": 0.25}, "b", (0.6, 1.0))
    assert row_b.own_rates == (1.0, 0.5)  # at t=0.6 b fires on the first; a always on the second


def test_own_threshold_sweep_starts_at_the_floor_of_other_rules() -> None:
    t = table([[0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    sweep = sweep_own_thresholds(t, ["a", "a", "respond"], {"b": 0.45}, grid=np.array([0.0, 0.5, 0.9]))
    assert list(sweep.rates) == ["a"]  # no b-labelled prompts, respond is not a category
    assert sweep.rates["a"].tolist() == [1.0, 1.0, 0.5]  # b at 0.45 refuses the second prompt anyway
    assert sweep_own_thresholds(t, ["a", "a", "respond"], {"a": NEVER}).rates == {}
