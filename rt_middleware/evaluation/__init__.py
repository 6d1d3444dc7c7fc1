"""Evaluation harness: first-token metrics from cached distributions, sweeps, plots, judge mode.

Layering: this package sits beside the CLI (it uses backends, policies and `decide`, never
LangChain). The model runs once per (model, prompt, temperature); everything else reads the cache.
"""

from __future__ import annotations

from rt_middleware.evaluation.cache import (
    DistributionCache,
    cached_distributions,
    default_cache_path,
    fits_context,
    model_identity,
)
from rt_middleware.evaluation.harness import (
    ISOLATION_COVERAGE,
    EvalResult,
    evaluate_first_token,
    load_eval_rows,
    split_rows,
    write_eval_report,
)
from rt_middleware.evaluation.metrics import (
    BinaryMetrics,
    Rate,
    binary_metrics,
    refusal_rates,
    wilson_interval,
)
from rt_middleware.evaluation.sweep import (
    IsolationRow,
    RocCurve,
    ThresholdSweep,
    isolation,
    isolation_band,
    roc_curve,
    sweep_own_thresholds,
    sweep_thresholds,
)
from rt_middleware.evaluation.table import ARGMAX, NEVER, ProbabilityTable, rules_of

__all__ = [
    "ARGMAX",
    "ISOLATION_COVERAGE",
    "NEVER",
    "BinaryMetrics",
    "DistributionCache",
    "EvalResult",
    "IsolationRow",
    "ProbabilityTable",
    "Rate",
    "RocCurve",
    "ThresholdSweep",
    "binary_metrics",
    "cached_distributions",
    "default_cache_path",
    "evaluate_first_token",
    "fits_context",
    "isolation",
    "isolation_band",
    "load_eval_rows",
    "model_identity",
    "refusal_rates",
    "roc_curve",
    "rules_of",
    "split_rows",
    "sweep_own_thresholds",
    "sweep_thresholds",
    "wilson_interval",
    "write_eval_report",
]
