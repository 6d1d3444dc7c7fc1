"""First-token evaluation: decisions from cached distributions, metrics, sweeps, report and plots.

"Refusal rate of category c" everywhere means: the share of prompts labelled c whose decision is
refuse or route, whichever category fired (a safety prompt caught by the Incomplete rule still
counts as refused). ``respond``-labelled prompts give the false-refusal rate.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rt_middleware.datasets import (
    DatasetError,
    LabeledPrompt,
    load_alpaca_eval,
    load_coconot,
    load_file,
    load_xstest,
)
from rt_middleware.decision import Decision, decide
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.evaluation.metrics import BinaryMetrics, Rate, binary_metrics, refusal_rates
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
from rt_middleware.evaluation.table import NEVER, ProbabilityTable, rules_of
from rt_middleware.policy import TenantPolicy
from rt_middleware.tokens import RESPOND

__all__ = [
    "ISOLATION_COVERAGE",
    "REFUSAL_RATE_DEFINITION",
    "EvalResult",
    "evaluate_first_token",
    "load_eval_rows",
    "opener_summary",
    "split_rows",
    "write_eval_report",
]


REFUSAL_RATE_DEFINITION = (
    "share of prompts with this label whose decision is refuse or route, whichever category fired"
)


def split_rows(
    rows: Sequence[LabeledPrompt], *, holdout_fraction: float = 0.5, seed: int = 0
) -> tuple[list[LabeledPrompt], list[LabeledPrompt]]:
    """(calibration, held-out): a seeded split stratified by label, original order kept in each part.

    Each label's rows are shuffled with ``random.Random(f"{seed}:{label}")`` and the first
    ``round(n * holdout_fraction)`` go to held-out, so adding rows of one label never reshuffles another.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise DatasetError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row.label, []).append(i)
    held: set[int] = set()
    for label, indices in by_label.items():
        shuffled = list(indices)
        random.Random(f"{seed}:{label}").shuffle(shuffled)
        held.update(shuffled[: round(len(shuffled) * holdout_fraction)])
    calibration = [r for i, r in enumerate(rows) if i not in held]
    heldout = [r for i, r in enumerate(rows) if i in held]
    return calibration, heldout


def load_eval_rows(
    dataset: str,
    *,
    categories: Sequence[str],
    split: str | None = None,
    holdout_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[str, list[LabeledPrompt]]:
    """(display name, rows) for ``coconot`` (test split unless told), ``xstest``, ``alpaca-eval``
    (805 benign instructions, label respond: for the opener rate) or a FILE.

    A FILE is evaluated whole, or with split ``test``/``calibration`` exactly the held-out /
    calibration part that `rt calibrate` uses with the same seed and fraction.
    """
    if dataset == "coconot":
        chosen = split or "test"
        if chosen not in ("test", "calibration"):
            raise DatasetError(f"--split for coconot must be test or calibration, got {chosen!r}")
        return f"coconot-{chosen}", load_coconot(chosen, "both")  # type: ignore[arg-type]
    if dataset == "xstest":
        if split not in (None, "test"):
            raise DatasetError("XSTest is an evaluation-only set: it has no calibration split")
        return "xstest", load_xstest()
    if dataset == "alpaca-eval":
        if split not in (None, "test"):
            raise DatasetError("AlpacaEval is an evaluation-only set: it has no calibration split")
        return "alpaca-eval", load_alpaca_eval()
    rows = load_file(dataset, categories=categories)
    if split is None:
        return Path(dataset).stem, rows
    if split not in ("test", "calibration"):
        raise DatasetError(f"--split must be test or calibration, got {split!r}")
    calibration, heldout = split_rows(rows, holdout_fraction=holdout_fraction, seed=seed)
    return f"{Path(dataset).stem}-{split}", heldout if split == "test" else calibration


@dataclass
class EvalResult:
    """Everything `rt eval` reports for one dataset under one tenant policy."""

    rows: list[LabeledPrompt]
    decisions: list[Decision]
    rates: dict[str, Rate]
    binary: BinaryMetrics
    confusion: dict[str, dict[str, int]]
    sweep: ThresholdSweep
    own_sweep: ThresholdSweep
    """Each category's rate as only its own threshold moves (others at the policy's rules)."""
    roc: RocCurve | None
    isolation: list[IsolationRow]
    isolation_coverage: float = ISOLATION_COVERAGE
    judge: dict[str, Any] | None = field(default=None)
    openers: dict[str, Any] | None = field(default=None)
    """`rt_middleware.evaluation.openers.opener_rate` on the benign rows, when measured."""
    opener_rows: list[LabeledPrompt] = field(default_factory=list)
    """The rows `openers` was measured on, in its order."""

    @property
    def refused(self) -> list[bool]:
        return [d.action != "respond" for d in self.decisions]

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.rows),
            "per_label": {k: v.to_dict() for k, v in self.rates.items()},
            "false_refusal": self.rates[RESPOND].to_dict() if RESPOND in self.rates else None,
            "binary": self.binary.to_dict(),
            "confusion": self.confusion,
            "auc": self.roc.auc if self.roc else None,
        }


def evaluate_first_token(
    rows: Sequence[LabeledPrompt],
    distributions: Sequence[FirstTokenDistribution],
    policy: TenantPolicy,
    *,
    tenant: str = "",
    policy_version: str = "",
    isolation_coverage: float = ISOLATION_COVERAGE,
) -> EvalResult:
    """Decide every prompt with `decide` (the router's own rule) from unbiased cached distributions."""
    if len(rows) != len(distributions):
        raise ValueError(f"{len(rows)} rows but {len(distributions)} distributions")
    if not rows:
        raise DatasetError("nothing to evaluate: the dataset has no rows")
    biased = [d.with_bias(policy.logit_bias) for d in distributions]
    decisions = [decide(d, policy, tenant=tenant, policy_version=policy_version) for d in biased]
    labels = [r.label for r in rows]
    refused = [d.action != "respond" for d in decisions]
    confusion: dict[str, Counter[str]] = {}
    for label, decision in zip(labels, decisions, strict=True):
        got = decision.category if decision.action != "respond" else RESPOND
        confusion.setdefault(label, Counter())[got or "backend_error"] += 1
    table = ProbabilityTable.from_distributions(biased)
    rules = rules_of(policy, table.categories)
    should_refuse = [r.should_refuse for r in rows]
    roc = roc_curve(table, labels, rules) if any(should_refuse) and not all(should_refuse) else None
    iso = [
        isolation(table, labels, rules, c, (isolation_band(table, labels, c, isolation_coverage), 1.0))
        for c in table.categories
        if c in labels and rules[c] != NEVER
    ]
    return EvalResult(
        rows=list(rows),
        decisions=decisions,
        rates=refusal_rates(labels, refused),
        binary=binary_metrics(should_refuse, refused),
        confusion={k: dict(v) for k, v in sorted(confusion.items())},
        sweep=sweep_thresholds(table, labels, rules),
        own_sweep=sweep_own_thresholds(table, labels, rules),
        roc=roc,
        isolation=iso,
        isolation_coverage=isolation_coverage,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def write_eval_report(result: EvalResult, out_dir: Path, meta: Mapping[str, Any]) -> dict[str, Path]:
    """report.json, predictions.jsonl (ids and decisions, no prompt text) and the PNG plots."""
    from rt_middleware.evaluation.plots import plot_isolation, plot_rate_curves, plot_rates, plot_roc

    out_dir.mkdir(parents=True, exist_ok=True)
    name = str(meta.get("dataset", ""))
    paths = {
        "rates": plot_rates(result.rates, out_dir / "rates.png", title=f"refusal rate per label: {name}"),
        "sweep": plot_rate_curves(
            result.sweep, out_dir / "rate_vs_threshold.png", title=f"threshold sweep: {name}"
        ),
    }
    if result.own_sweep.rates:
        paths["own_sweep"] = plot_rate_curves(
            result.own_sweep,
            out_dir / "rate_vs_own_threshold.png",
            title=f"each category's own threshold (others fixed): {name}",
            xlabel="threshold of the category itself (others at the policy's rules)",
        )
    if result.roc is not None:
        paths["roc"] = plot_roc(result.roc, out_dir / "roc.png", title=f"ROC: {name}")
    if result.isolation:
        paths["isolation"] = plot_isolation(result.isolation, out_dir / "isolation.png")
    predictions = out_dir / "predictions.jsonl"
    with predictions.open("w", encoding="utf-8") as fh:
        for i, (row, decision) in enumerate(zip(result.rows, result.decisions, strict=True)):
            record = {
                "id": row.id or str(i),
                "label": row.label,
                "action": decision.action,
                "category": decision.category,
                "probabilities": dict(decision.probabilities),
            }
            fh.write(json.dumps(record) + "\n")
    paths["predictions"] = predictions
    if result.openers is not None:
        paths["openers"] = _write_openers(result.opener_rows, result.openers, out_dir / "openers.jsonl")
    report = {
        **meta,
        "refusal_rate_definition": REFUSAL_RATE_DEFINITION,
        **result.summary(),
        "sweep": result.sweep.to_dict(),
        "own_sweep": result.own_sweep.to_dict(),
        "roc": result.roc.to_dict() if result.roc else None,
        "isolation": {
            "coverage": result.isolation_coverage,
            "band": "threshold from where the category alone refuses `coverage` of its own prompts to 1.0",
            "rows": [row.to_dict() for row in result.isolation],
        },
        "judge": result.judge,
        "openers": opener_summary(result.openers) if result.openers is not None else None,
        "files": {k: str(v) for k, v in paths.items()},
    }
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(_jsonable(report), indent=2), encoding="utf-8")
    paths["report"] = report_path
    return paths


def opener_summary(openers: Mapping[str, Any]) -> dict[str, Any]:
    """The opener report without per-row lists and prompt text (report.json keeps ids only, like
    predictions.jsonl; the answers go to openers.jsonl)."""
    summary = {k: v for k, v in openers.items() if k not in ("answers", "openers")}
    summary["examples"] = [{k: v for k, v in e.items() if k != "prompt"} for e in openers.get("examples", [])]
    return summary


def _write_openers(rows: Sequence[LabeledPrompt], openers: Mapping[str, Any], path: Path) -> Path:
    """One line per measured row: id, group, the detected opener (or null) and the answer."""
    from rt_middleware.evaluation.openers import opener_group

    with path.open("w", encoding="utf-8") as fh:
        for i, (row, answer, opener) in enumerate(
            zip(rows, openers["answers"], openers["openers"], strict=True)
        ):
            record = {"id": row.id or str(i), "group": opener_group(row), "opener": opener, "answer": answer}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
