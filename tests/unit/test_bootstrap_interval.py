"""The seeded bootstrap interval used for F1 and AUC in the quality figures."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware.evaluation.metrics import bootstrap_interval


def test_interval_brackets_the_mean_and_is_reproducible() -> None:
    values = np.array([0.0, 1.0] * 50)
    interval = bootstrap_interval(lambda idx: float(values[idx].mean()), len(values))
    assert interval is not None
    low, high = interval
    assert 0.35 < low < 0.5 < high < 0.65
    assert bootstrap_interval(lambda idx: float(values[idx].mean()), len(values)) == interval


def test_undefined_resamples_are_skipped_and_all_undefined_is_none() -> None:
    assert bootstrap_interval(lambda idx: None, 10) is None
    assert bootstrap_interval(lambda idx: 1.0, 0) is None
    values = np.array([0] * 9 + [1])
    interval = bootstrap_interval(lambda idx: 1.0 if values[idx].any() else None, 10)
    assert interval == (1.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_interval_stays_within_the_data_range(data: list[float]) -> None:
    values = np.array(data)
    low, high = bootstrap_interval(lambda idx: float(values[idx].mean()), len(values), resamples=50)
    assert values.min() - 1e-12 <= low <= high <= values.max() + 1e-12
