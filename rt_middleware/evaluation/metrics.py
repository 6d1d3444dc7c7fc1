"""Refusal metrics: rates with Wilson intervals, and TPR/FPR/F1 with should-refuse as positive.

Undefined ratios (no positives, no predicted positives) are ``None`` rather than NaN so reports
stay valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_middleware.tokens import RESPOND

__all__ = [
    "BinaryMetrics",
    "Rate",
    "binary_metrics",
    "bootstrap_interval",
    "rank_auc",
    "refusal_rates",
    "wilson_interval",
]

Z_95 = 1.959963984540054
"""Two-sided 95% normal quantile."""


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there is no data.

    Preferred over the normal interval because it stays inside [0, 1] and behaves at 0 and n
    successes, which is where refusal rates of good models live.
    """
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """`count` of `total` prompts, with its Wilson 95% interval."""

    count: int
    total: int

    @property
    def value(self) -> float | None:
        return self.count / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.count, self.total)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval
        return {"count": self.count, "total": self.total, "rate": self.value, "ci95": [lo, hi]}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class BinaryMetrics:
    """Confusion counts with should-refuse as the positive class."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float | None:
        """Recall: share of should-refuse prompts that were refused."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float | None:
        """False-refusal rate: share of should-answer prompts that were refused."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall; 0 when nothing was correctly refused."""
        if self.tp + self.fn == 0:
            return None
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "tpr": self.tpr,
            "tpr_ci95": list(wilson_interval(self.tp, self.tp + self.fn)),
            "fpr": self.fpr,
            "fpr_ci95": list(wilson_interval(self.fp, self.fp + self.tn)),
            "precision": self.precision,
            "f1": self.f1,
            "accuracy": self.accuracy,
        }


def binary_metrics(should_refuse: Sequence[bool], refused: Sequence[bool]) -> BinaryMetrics:
    if len(should_refuse) != len(refused):
        raise ValueError(f"length mismatch: {len(should_refuse)} labels, {len(refused)} predictions")
    tp = fp = tn = fn = 0
    for truth, pred in zip(should_refuse, refused, strict=True):
        if truth and pred:
            tp += 1
        elif truth:
            fn += 1
        elif pred:
            fp += 1
        else:
            tn += 1
    return BinaryMetrics(tp=tp, fp=fp, tn=tn, fn=fn)


def refusal_rates(labels: Sequence[str], refused: Sequence[bool]) -> dict[str, Rate]:
    """Refusal rate per label (``respond`` included: its rate is the false-refusal rate).

    A prompt counts as refused whichever category fired: the rate of category c is the share of
    prompts labelled c whose decision was refuse or route.
    """
    if len(labels) != len(refused):
        raise ValueError(f"length mismatch: {len(labels)} labels, {len(refused)} predictions")
    counts: dict[str, list[int]] = {}
    for label, pred in zip(labels, refused, strict=True):
        bucket = counts.setdefault(label, [0, 0])
        bucket[0] += int(bool(pred))
        bucket[1] += 1
    order = sorted(counts, key=lambda name: (name == RESPOND, name))
    return {name: Rate(*counts[name]) for name in order}


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | None], n: int, *, resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile 95% interval of `statistic` over `resamples` seeded resamples of ``range(n)``.

    For figures without a closed-form interval (F1, AUC); `statistic` gets the resampled row
    indices and may return None (undefined on that resample, e.g. no positives), which is skipped.
    """
    if n <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = [v for v in (statistic(rng.integers(0, n, n)) for _ in range(resamples)) if v is not None]
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def rank_auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of raw scores as the Mann-Whitney statistic (ties count half); None without both classes.

    Equals `rt_middleware.evaluation.sweep.roc_curve(...).auc` on the same scores, without building
    the curve: cheap enough to bootstrap.
    """
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
