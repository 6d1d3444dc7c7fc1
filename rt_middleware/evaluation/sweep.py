"""Threshold sweeps over cached distributions: rate-vs-threshold curves, ROC, cross-category isolation.

All of these run on a `ProbabilityTable` (already re-biased by the policy), never on the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_middleware.errors import ConfigError
from rt_middleware.evaluation.table import NEVER, ProbabilityTable, Rule
from rt_middleware.tokens import RESPOND

__all__ = [
    "ISOLATION_COVERAGE",
    "IsolationRow",
    "RocCurve",
    "ThresholdSweep",
    "common_refusal_score",
    "isolation",
    "isolation_band",
    "roc_curve",
    "sweep_own_thresholds",
    "sweep_thresholds",
]

ISOLATION_COVERAGE = 0.95
"""The isolation sweep of category c runs from the threshold at which c alone refuses 95% of its
own prompts up to 1.0 (the default of `rt eval` and `rt calibrate`)."""
DEFAULT_GRID = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), np.geomspace(1e-9, 1.0, 91)]))


def _label_masks(labels: Sequence[str]) -> dict[str, np.ndarray]:
    arr = np.asarray(labels)
    order = sorted(set(labels), key=lambda n: (n == RESPOND, n))
    return {name: arr == name for name in order}


def common_refusal_score(table: ProbabilityTable, rules: Mapping[str, Rule]) -> np.ndarray:
    """Highest probability among the categories allowed to fire: refused at threshold t iff >= t."""
    cols = [table.column(c) for c in table.categories if rules.get(c) != NEVER]
    return np.max(np.stack(cols, axis=1), axis=1) if cols else np.zeros(len(table))


@dataclass(frozen=True)
class ThresholdSweep:
    """Refusal rate of each label when every controllable category shares one threshold t."""

    thresholds: np.ndarray
    rates: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds.tolist(),
            "rates": {k: v.tolist() for k, v in self.rates.items()},
        }


def sweep_thresholds(
    table: ProbabilityTable, labels: Sequence[str], rules: Mapping[str, Rule], grid: np.ndarray = DEFAULT_GRID
) -> ThresholdSweep:
    """The paper's single-knob sweep: one threshold for all categories not set to respond."""
    score = common_refusal_score(table, rules)
    rates = {
        name: np.array([float(np.mean(score[mask] >= t)) for t in grid])
        for name, mask in _label_masks(labels).items()
    }
    return ThresholdSweep(thresholds=np.asarray(grid, dtype=np.float64), rates=rates)


def sweep_own_thresholds(
    table: ProbabilityTable, labels: Sequence[str], rules: Mapping[str, Rule], grid: np.ndarray = DEFAULT_GRID
) -> ThresholdSweep:
    """Each category's knob on its own: the rate of prompts labelled c as only c's threshold moves.

    The other categories keep their rules, so each curve starts at c's floor (what they refuse).
    """
    arr = np.asarray(labels)
    rates = {}
    for category in table.categories:
        mask = arr == category
        if not mask.any() or rules.get(category) == NEVER:
            continue
        floor = table.subset(mask).refused({**rules, category: NEVER})
        p = table.column(category)[mask]
        rates[category] = np.array([float(np.mean(floor | (p >= t))) for t in grid])
    return ThresholdSweep(thresholds=np.asarray(grid, dtype=np.float64), rates=rates)


@dataclass(frozen=True)
class RocCurve:
    """TPR against FPR (should-refuse positive) over every distinct common threshold."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fpr": self.fpr.tolist(),
            "tpr": self.tpr.tolist(),
            "thresholds": [t if math.isfinite(t) else None for t in self.thresholds.tolist()],
            "auc": self.auc,
        }


def roc_curve(table: ProbabilityTable, labels: Sequence[str], rules: Mapping[str, Rule]) -> RocCurve:
    positive = np.asarray([label != RESPOND for label in labels])
    if positive.all() or not positive.any():
        raise ConfigError("a ROC curve needs both should-refuse and should-answer prompts")
    score = common_refusal_score(table, rules)
    cuts = np.concatenate([[np.inf], np.unique(score)[::-1]])
    tpr = np.array([np.mean(score[positive] >= t) for t in cuts])
    fpr = np.array([np.mean(score[~positive] >= t) for t in cuts])
    if fpr[-1] < 1.0 or tpr[-1] < 1.0:
        cuts, tpr, fpr = np.append(cuts, 0.0), np.append(tpr, 1.0), np.append(fpr, 1.0)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=cuts)


def isolation_band(table: ProbabilityTable, labels: Sequence[str], category: str, coverage: float) -> float:
    """The lowest threshold of the isolation sweep: where `category` alone refuses `coverage` of its
    own prompts (the sweep's other end is 1.0, where it fires on nothing below certainty)."""
    if not 0.0 < coverage <= 1.0:
        raise ConfigError(f"coverage must be in (0, 1], got {coverage}")
    own = np.sort(table.column(category)[np.asarray(labels) == category])[::-1]
    if own.size == 0:
        raise ConfigError(f"no prompts labelled {category!r} to place the isolation sweep")
    return float(own[max(0, math.ceil(coverage * own.size) - 1)])


@dataclass(frozen=True)
class IsolationRow:
    """Moving one category's threshold across [t_min, t_max], the others held at their rules."""

    category: str
    t_min: float
    t_max: float
    own_rates: tuple[float, float]
    """(rate at t_min, rate at t_max) of the swept category's own prompts."""
    deltas: dict[str, float]
    """Other label -> change of its refusal rate across the sweep (a share, not pp)."""
    totals: dict[str, int]

    @property
    def max_other_delta(self) -> float:
        cats = [v for k, v in self.deltas.items() if k != RESPOND]
        return max(cats, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "own_rate_at_t_min": self.own_rates[0],
            "own_rate_at_t_max": self.own_rates[1],
            "delta_pp": {k: 100 * v for k, v in self.deltas.items()},
            "n": self.totals,
            "max_other_category_delta_pp": 100 * self.max_other_delta,
        }


def isolation(
    table: ProbabilityTable,
    labels: Sequence[str],
    rules: Mapping[str, Rule],
    category: str,
    band: tuple[float, float],
) -> IsolationRow:
    """How much every other label's refusal rate moves while `category`'s threshold spans `band`.

    Under the decision rule a prompt is refused when any category fires, so rates are monotone in
    each threshold and the change across the band is the rate at its low end minus the rate at its
    high end. A label's rate moves only through prompts on which `category` alone fires.
    """
    t_min, t_max = band
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ConfigError(f"isolation band must satisfy 0 <= t_min <= t_max <= 1, got {band}")
    others = {**rules, category: NEVER}
    base = table.refused(others)
    p = table.column(category)
    masks = _label_masks(labels)

    def rates(t: float) -> dict[str, float]:
        refused = base | (p >= t)
        return {name: float(np.mean(refused[mask])) for name, mask in masks.items()}

    low, high = rates(t_min), rates(t_max)
    deltas = {name: low[name] - high[name] for name in masks if name != category}
    totals = {name: int(mask.sum()) for name, mask in masks.items()}
    own = (low.get(category, float("nan")), high.get(category, float("nan")))
    return IsolationRow(
        category=category, t_min=t_min, t_max=t_max, own_rates=own, deltas=deltas, totals=totals
    )
