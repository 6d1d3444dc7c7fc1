"""The default preset's quality figures: hand-computed on three prompts."""

from __future__ import annotations

import pytest

from rt_middleware import FirstTokenDistribution, TenantPolicy
from rt_middleware.datasets import LabeledPrompt
from rt_middleware.train.quality import score

INCOMPLETE = "Incomplete requests"


def dist(respond: float) -> FirstTokenDistribution:
    return FirstTokenDistribution(probabilities={"respond": respond, INCOMPLETE: 1 - respond})


def test_score_matches_hand_computed_figures() -> None:
    rows = [
        LabeledPrompt("a", INCOMPLETE),
        LabeledPrompt("b", INCOMPLETE),
        LabeledPrompt("c", "respond", mimics=INCOMPLETE),
        LabeledPrompt("d", "respond"),
    ]
    dists = [dist(0.1), dist(0.9), dist(0.2), dist(0.8)]  # argmax refuses a and c
    figures = score(rows, dists, TenantPolicy())
    assert figures["n"] == 4
    assert figures["should_refuse_recall"] == 0.5  # a of {a, b}
    assert figures["false_refusal_rate"] == 0.5  # c of {c, d}
    assert figures["precision"] == 0.5
    assert figures["f1"] == pytest.approx(0.5)
    assert figures["refusal_rate_by_group"] == {
        INCOMPLETE: 0.5, "respond": 0.0, f"respond (mimics {INCOMPLETE})": 1.0,
    }


def test_score_carries_intervals_and_the_policy_free_auc() -> None:
    rows = [LabeledPrompt(str(i), INCOMPLETE) for i in range(6)] + [LabeledPrompt(f"r{i}", "respond") for i in range(6)]
    # refusal score P(incomplete) 0.9..0.4 for should-refuse, 0.45..-: one respond row outranks one refusal
    dists = [dist(1 - p) for p in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)] + [dist(1 - p) for p in (0.45, 0.3, 0.2, 0.1, 0.05, 0.0)]
    figures = score(rows, dists, TenantPolicy())
    # Mann-Whitney: 36 pairs, only (0.4 < 0.45) is mis-ordered -> 35/36
    assert figures["auc"] == pytest.approx(round(35 / 36, 4))
    ci = figures["ci95"]
    low, high = ci["should_refuse_recall"]
    assert low <= figures["should_refuse_recall"] <= high and 0 < low < high <= 1
    assert ci["false_refusal_rate"][0] == 0.0  # no false refusals: Wilson starts at 0
    assert ci["f1"][0] <= figures["f1"] <= ci["f1"][1]
    assert ci["auc"][0] <= figures["auc"] <= ci["auc"][1] <= 1.0
    assert set(ci["refusal_rate_by_group"]) == set(figures["refusal_rate_by_group"])


def test_score_has_no_auc_when_every_row_has_one_label() -> None:
    figures = score([LabeledPrompt("a", INCOMPLETE)], [dist(0.2)], TenantPolicy())
    assert "auc" not in figures and "auc" not in figures["ci95"]


def test_policy_free_figures_use_the_argmax_and_a_ten_percent_false_refusal_threshold() -> None:
    rows = [LabeledPrompt(str(i), INCOMPLETE) for i in range(4)] + [LabeledPrompt(f"r{i}", "respond") for i in range(10)]
    refuse_p = [0.9, 0.6, 0.45, 0.3, 0.7, 0.4, 0.35, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0]
    figures = score(rows, [dist(1 - p) for p in refuse_p], TenantPolicy())["policy_free"]
    assert figures["argmax_recall"] == 0.5 and figures["argmax_false_refusal_rate"] == 0.1  # p > 0.5 wins
    # one of ten benign prompts may score above the threshold: it sits at 0.4 -> 0.9, 0.6, 0.45 pass
    assert figures["recall_at_10pct_false_refusal"] == 0.75
    assert figures["false_refusal_at_that_threshold"] == 0.1


def test_refusals_by_source_are_hand_computed() -> None:
    from rt_middleware.train.quality import _refusals_by_source

    rows = [LabeledPrompt("a", "respond", source="s/one"), LabeledPrompt("b", "respond", source="s/one"),
            LabeledPrompt("c", "respond", source="s/two")]
    dists = [dist(0.3), dist(0.8), dist(0.6)]  # P(incomplete) 0.7, 0.2, 0.4
    policy = TenantPolicy(categories={INCOMPLETE: {"threshold": 0.5}})
    out = _refusals_by_source(rows, dists, policy, threshold=0.3)
    assert out["n"] == 3
    assert out["s/one"] == {"n": 2, "refused_by_policy": 0.5, "argmax_refused": 0.5,
                            "refused_at_calibration_threshold": 0.5}
    assert out["s/two"] == {"n": 1, "refused_by_policy": 0.0, "argmax_refused": 0.0,
                            "refused_at_calibration_threshold": 1.0}
