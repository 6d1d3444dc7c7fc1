"""The held-out report of a calibrated policy: achieved rates on data the fit never saw, with
Wilson intervals, and the isolation sweep measured there.

Isolation: the threshold of one category is swept from where it alone refuses `coverage`
(`rt_middleware.evaluation.ISOLATION_COVERAGE` by default in the CLI) of its own calibration
prompts up to 1.0, others fixed; the report gives how much every other label's held-out refusal
rate moves (`rt_middleware.evaluation.sweep.isolation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_middleware.evaluation.metrics import Rate
from rt_middleware.evaluation.sweep import IsolationRow, isolation, isolation_band
from rt_middleware.evaluation.table import NEVER, ProbabilityTable, rules_of
from rt_middleware.policy import TenantPolicy
from rt_middleware.tokens import RESPOND

__all__ = ["PROFILE_COVERAGES", "HeldOutReport", "heldout_report"]

PROFILE_COVERAGES = (0.5, 0.8, 0.9, 0.95)
"""Coverages at which the held-out report also gives the worst cross-category change."""


@dataclass(frozen=True)
class HeldOutReport:
    """Achieved rates on data the fit never saw, and the isolation sweep measured there."""

    rates: dict[str, Rate]
    targets: dict[str, float]
    false_refusal: Rate | None
    isolation: list[IsolationRow]
    isolation_profile: dict[float, dict[str, float]]
    """Coverage -> swept category -> largest change of another category's rate (a share): how
    isolation degrades as the sweep reaches further into a category's low-probability prompts."""

    def error_pp(self, category: str) -> float | None:
        value = self.rates[category].value if category in self.rates else None
        return None if value is None else 100 * abs(value - self.targets[category])

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": {
                c: {
                    **self.rates[c].to_dict(),
                    "target": t,
                    "abs_error_pp": self.error_pp(c),
                    "one_pp_target_applies": self.rates[c].total >= 100,
                }
                for c, t in self.targets.items()
                if c in self.rates
            },
            "false_refusal": self.false_refusal.to_dict() if self.false_refusal else None,
            "isolation": [row.to_dict() for row in self.isolation],
            "isolation_max_other_delta_pp_by_coverage": {
                str(cov): {c: 100 * v for c, v in deltas.items()}
                for cov, deltas in self.isolation_profile.items()
            },
        }


def heldout_report(
    policy: TenantPolicy,
    calibration: ProbabilityTable,
    calibration_labels: Sequence[str],
    heldout: ProbabilityTable,
    heldout_labels: Sequence[str],
    targets: Mapping[str, float],
    *,
    coverage: float,
) -> HeldOutReport:
    """Rates of `policy` on held-out data with Wilson intervals, plus the isolation sweep.

    Each isolation band is placed on the calibration split (where thresholds are chosen) and
    measured on the held-out split.
    """
    arr = np.asarray(heldout_labels)
    refused = heldout.refused_under(policy)
    rates = {c: Rate(int(refused[arr == c].sum()), int((arr == c).sum())) for c in targets}
    benign = arr == RESPOND
    false_refusal = Rate(int(refused[benign].sum()), int(benign.sum())) if benign.any() else None
    cal_biased = calibration.with_bias(policy.logit_bias)
    held_biased = heldout.with_bias(policy.logit_bias)
    rules = rules_of(policy, heldout.categories)
    swept = [
        c for c in heldout.categories if rules[c] != NEVER and c in calibration_labels and c in heldout_labels
    ]

    def sweep(cov: float) -> list[IsolationRow]:
        return [
            isolation(
                held_biased,
                heldout_labels,
                rules,
                c,
                (isolation_band(cal_biased, calibration_labels, c, cov), 1.0),
            )
            for c in swept
        ]

    profile = {
        cov: {row.category: row.max_other_delta for row in sweep(cov)}
        for cov in sorted({*PROFILE_COVERAGES, coverage})
    }
    return HeldOutReport(
        rates=rates,
        targets=dict(targets),
        false_refusal=false_refusal,
        isolation=sweep(coverage),
        isolation_profile=profile,
    )
