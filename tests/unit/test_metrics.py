"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from rt_middleware.evaluation import Rate, binary_metrics, refusal_rates, wilson_interval


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = z/(1+z²/n) * sqrt(p(1-p)/n + z²/4n²)
    z = 1.959963984540054
    half = z / (1 + z * z / 10) * math.sqrt(0.025 + z * z / 400)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (1, -1)])
def test_wilson_interval_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


def test_binary_metrics_hand_example() -> None:
    should = [True, True, True, False, False]
    refused = [True, False, True, True, False]
    m = binary_metrics(should, refused)
    assert (m.tp, m.fn, m.fp, m.tn) == (2, 1, 1, 1)
    assert m.tpr == pytest.approx(2 / 3)
    assert m.fpr == pytest.approx(1 / 2)
    assert m.precision == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)  # 2tp / (2tp + fp + fn) = 4 / 6
    assert m.accuracy == pytest.approx(3 / 5)
    data = m.to_dict()
    assert data["tpr_ci95"] == pytest.approx(list(wilson_interval(2, 3)))
    assert data["fpr_ci95"] == pytest.approx(list(wilson_interval(1, 2)))


def test_binary_metrics_undefined_ratios_are_none() -> None:
    m = binary_metrics([False, False], [False, False])
    assert m.tpr is None and m.f1 is None and m.precision is None
    assert m.fpr == 0.0
    with pytest.raises(ValueError, match="length mismatch"):
        binary_metrics([True], [True, False])


def test_refusal_rates_count_any_refusal_per_label() -> None:
    labels = ["Incomplete requests", "respond", "Incomplete requests", "Humanizing requests", "respond"]
    refused = [True, True, False, True, False]
    rates = refusal_rates(labels, refused)
    assert list(rates) == ["Humanizing requests", "Incomplete requests", "respond"]  # respond last
    assert rates["Incomplete requests"] == Rate(1, 2)
    assert rates["respond"].value == 0.5
    assert rates["Humanizing requests"].to_dict()["ci95"] == pytest.approx(list(wilson_interval(1, 1)))
    assert Rate(0, 0).value is None
