"""`rt eval`: refusal metrics of a model under a tenant policy, from cached first-token distributions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rt_middleware.cli._eval_common import distributions, drop_too_long, fmt, load_policy, print_isolation
from rt_middleware.cli._options import (
    ISOLATION_COVERAGE,
    BatchOption,
    CacheOption,
    DeviceOption,
    DtypeOption,
    HoldoutOption,
    IsolationOption,
    ModelOption,
    NoCacheOption,
    PolicyOption,
    SeedOption,
    load_model,
    runs_on_llamacpp,
)
from rt_middleware.cli.app import app
from rt_middleware.cli.common import console, user_errors

if TYPE_CHECKING:
    from rt_middleware.backends.base import BaseBackend
    from rt_middleware.datasets import LabeledPrompt
    from rt_middleware.evaluation import EvalResult
    from rt_middleware.policy import TenantPolicy


def print_eval(result: EvalResult, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("label", "n", "refused", "rate", "95% CI"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, rate in result.rates.items():
        lo, hi = rate.interval
        name = "respond (false refusals)" if label == "respond" else label
        table.add_row(name, str(rate.total), str(rate.count), fmt(rate.value), f"{fmt(lo)} - {fmt(hi)}")
    console.print(table)
    b = result.binary
    auc = f"  AUC={result.roc.auc:.3f}" if result.roc else ""
    console.print(
        f"should-refuse positive: TPR={fmt(b.tpr)} FPR={fmt(b.fpr)} precision={fmt(b.precision)} "
        f"F1={fmt(b.f1, pct=False)}{auc}",
        highlight=False,
    )
    if result.isolation:
        print_isolation(result.isolation, result.isolation_coverage)


@app.command("eval")
def eval_command(
    dataset: Annotated[
        str, typer.Option("--dataset", help="coconot, xstest, or a FILE (JSONL/CSV: prompt, label).")
    ],
    model: ModelOption = "default",
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    policy: PolicyOption = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant (default: the policy's default).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="test|calibration: CoCoNot's split (default test); for a FILE, the held-out "
            "or calibration part of `rt calibrate`'s split (default: the whole file).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: rt-eval/<dataset>).")
    ] = None,
    batch_size: BatchOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    holdout_fraction: HoldoutOption = 0.5,
    seed: SeedOption = 0,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="Judge mode: also generate full responses and have this model (any "
            "backend spec) label them REFUSED/ANSWERED. Slow: one generation per prompt.",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Response length in judge mode.")
    ] = 128,
    isolation_coverage: IsolationOption = ISOLATION_COVERAGE,
) -> None:
    """Per-label refusal rates, TPR/FPR/F1, threshold sweep, ROC and isolation; plots and a JSON report."""
    from rt_middleware.evaluation import evaluate_first_token, load_eval_rows, write_eval_report

    with user_errors():
        backend = load_model(model, device=device, dtype=dtype)
        categories = backend.schema.category_names
        store, used_tenant, tenant_policy = load_policy(policy, tenant, categories)
        name, rows = load_eval_rows(
            dataset, categories=categories, split=split, holdout_fraction=holdout_fraction, seed=seed
        )
        rows = drop_too_long(backend, rows, name)
        dists = distributions(
            backend,
            rows,
            temperature=tenant_policy.temperature,
            cache=cache,
            no_cache=no_cache,
            batch_size=batch_size,
        )
        result = evaluate_first_token(
            rows,
            dists,
            tenant_policy,
            tenant=used_tenant,
            policy_version=store.version,
            isolation_coverage=isolation_coverage,
        )
        out_dir = out or Path("rt-eval") / name
        if judge is not None:
            judge_options = {} if runs_on_llamacpp(judge) else {"device": device, "dtype": dtype}
            judge_backend = load_model(judge, **judge_options)
            result.judge = _judge(
                backend, judge_backend, rows, tenant_policy, result, out_dir, max_new_tokens
            )
        meta = {
            "model": model,
            "model_name": backend.model_name,
            "dataset": name,
            "tenant": used_tenant,
            "policy": str(policy) if policy else "shipped default",
            "policy_version": store.version,
            "temperature": tenant_policy.temperature,
            "mode": "first-token" + (" + judge" if judge else ""),
        }
        paths = write_eval_report(result, out_dir, meta)
    print_eval(result, f"{name} · {backend.model_name} · tenant {used_tenant}")
    if result.judge:
        j = result.judge
        console.print(
            f"judge mode: refusal rate {fmt(j['refusal_rate'])}, agreement with first token "
            f"{fmt(j['agreement'])}, unparsed {j['unparsed']}",
            highlight=False,
        )
    for kind, path in paths.items():
        console.print(f"[dim]{kind}:[/] {path}", highlight=False)


def _judge(
    responder: BaseBackend,
    judge_backend: BaseBackend,
    rows: list[LabeledPrompt],
    policy: TenantPolicy,
    result: EvalResult,
    out_dir: Path,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Judge-mode metrics next to first-token ones; the responses go to judge.jsonl."""
    import json

    from rt_middleware.evaluation import binary_metrics, refusal_rates
    from rt_middleware.evaluation.judge import judge_responses

    judged = judge_responses(responder, judge_backend, rows, policy, max_new_tokens=max_new_tokens)
    refused = [j.verdict == "REFUSED" for j in judged]
    labels = [r.label for r in rows]
    agree = sum(a == b for a, b in zip(refused, result.refused, strict=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "judge.jsonl").open("w", encoding="utf-8") as fh:
        for row, item in zip(rows, judged, strict=True):
            fh.write(
                json.dumps({"id": row.id, "label": row.label, **item.to_dict()}, ensure_ascii=False) + "\n"
            )
    return {
        "judge": judge_backend.model_name,
        "refusal_rate": sum(refused) / len(refused),
        "per_label": {k: v.to_dict() for k, v in refusal_rates(labels, refused).items()},
        "binary": binary_metrics([r.should_refuse for r in rows], refused).to_dict(),
        "agreement": agree / len(rows),
        "unparsed": sum(j.verdict is None for j in judged),
        "note": "unparsed verdicts count as answered",
    }
