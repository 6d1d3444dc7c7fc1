"""Evaluation harness: first-token metrics from cached distributions, sweeps, plots, judge mode,
and the opener rate (answers after a forced ``[respond]`` that open with refusal text).

Layering: above the backends, below calibration, training and the CLI (it uses backends,
policies and `decide`, never LangChain). The model runs once per (model, prompt, temperature);
everything else reads the cache. Names load on first use, so importing one submodule (the CLI
reads `sweep.ISOLATION_COVERAGE`) does not import the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rt_middleware.evaluation.cache import (
        DistributionCache,
        cached_distributions,
        default_cache_path,
        fits_context,
        model_identity,
    )
    from rt_middleware.evaluation.harness import (
        EvalResult,
        evaluate_first_token,
        load_eval_rows,
        split_rows,
        write_eval_report,
    )
    from rt_middleware.evaluation.heldout import (
        HeldOutReport,
        heldout_report,
    )
    from rt_middleware.evaluation.metrics import (
        BinaryMetrics,
        Rate,
        binary_metrics,
        refusal_rates,
        wilson_interval,
    )
    from rt_middleware.evaluation.openers import (
        opener_rate,
        opener_report,
        opener_rows,
    )
    from rt_middleware.evaluation.sweep import (
        ISOLATION_COVERAGE,
        IsolationRow,
        RocCurve,
        ThresholdSweep,
        isolation,
        isolation_band,
        roc_curve,
        sweep_own_thresholds,
        sweep_thresholds,
    )
    from rt_middleware.evaluation.table import (
        ARGMAX,
        NEVER,
        ProbabilityTable,
        rules_of,
    )

__all__ = [
    "ARGMAX",
    "ISOLATION_COVERAGE",
    "NEVER",
    "BinaryMetrics",
    "DistributionCache",
    "EvalResult",
    "HeldOutReport",
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
    "heldout_report",
    "isolation",
    "isolation_band",
    "load_eval_rows",
    "model_identity",
    "opener_rate",
    "opener_report",
    "opener_rows",
    "refusal_rates",
    "roc_curve",
    "rules_of",
    "split_rows",
    "sweep_own_thresholds",
    "sweep_thresholds",
    "wilson_interval",
    "write_eval_report",
]

_LAZY = {
    "ARGMAX": "rt_middleware.evaluation.table",
    "BinaryMetrics": "rt_middleware.evaluation.metrics",
    "DistributionCache": "rt_middleware.evaluation.cache",
    "EvalResult": "rt_middleware.evaluation.harness",
    "HeldOutReport": "rt_middleware.evaluation.heldout",
    "ISOLATION_COVERAGE": "rt_middleware.evaluation.sweep",
    "IsolationRow": "rt_middleware.evaluation.sweep",
    "NEVER": "rt_middleware.evaluation.table",
    "ProbabilityTable": "rt_middleware.evaluation.table",
    "Rate": "rt_middleware.evaluation.metrics",
    "RocCurve": "rt_middleware.evaluation.sweep",
    "ThresholdSweep": "rt_middleware.evaluation.sweep",
    "binary_metrics": "rt_middleware.evaluation.metrics",
    "cached_distributions": "rt_middleware.evaluation.cache",
    "default_cache_path": "rt_middleware.evaluation.cache",
    "evaluate_first_token": "rt_middleware.evaluation.harness",
    "fits_context": "rt_middleware.evaluation.cache",
    "heldout_report": "rt_middleware.evaluation.heldout",
    "isolation": "rt_middleware.evaluation.sweep",
    "isolation_band": "rt_middleware.evaluation.sweep",
    "load_eval_rows": "rt_middleware.evaluation.harness",
    "model_identity": "rt_middleware.evaluation.cache",
    "opener_rate": "rt_middleware.evaluation.openers",
    "opener_report": "rt_middleware.evaluation.openers",
    "opener_rows": "rt_middleware.evaluation.openers",
    "refusal_rates": "rt_middleware.evaluation.metrics",
    "roc_curve": "rt_middleware.evaluation.sweep",
    "rules_of": "rt_middleware.evaluation.table",
    "split_rows": "rt_middleware.evaluation.harness",
    "sweep_own_thresholds": "rt_middleware.evaluation.sweep",
    "sweep_thresholds": "rt_middleware.evaluation.sweep",
    "wilson_interval": "rt_middleware.evaluation.metrics",
    "write_eval_report": "rt_middleware.evaluation.harness",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_middleware.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
