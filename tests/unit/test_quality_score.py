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
