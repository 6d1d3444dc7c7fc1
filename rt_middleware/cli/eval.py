"""`rt eval`: refusal metrics of a model under a tenant policy, from cached first-token distributions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import console, user_errors

if TYPE_CHECKING:
    from rt_middleware.backends.base import BaseBackend
    from rt_middleware.datasets import LabeledPrompt
    from rt_middleware.distribution import FirstTokenDistribution
    from rt_middleware.evaluation import EvalResult
    from rt_middleware.policy import PolicyStore, TenantPolicy

ModelOption = Annotated[str, typer.Option("--model", help="HF model dir, a .gguf file, or 'default'.")]
PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Policy file (YAML or JSON); default: the shipped one.")
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache", help="Distribution cache (JSONL); default: $RT_CACHE_DIR or ~/.cache/rt-middleware."
    ),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
HoldoutOption = Annotated[
    float,
    typer.Option("--holdout-fraction", help="Share of a FILE's rows per label held out (seeded split)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of a FILE's calibration/held-out split.")]
IsolationOption = Annotated[
    float,
    typer.Option(
        "--isolation-coverage",
        min=0.01,
        max=1.0,
        help="Isolation sweep: each category's threshold runs from where it alone refuses this share "
        "of its own prompts up to 1.0.",
    ),
]
ISOLATION_COVERAGE = 0.95
"""The library default (`rt_middleware.evaluation.ISOLATION_COVERAGE`), repeated so that
`rt --help` does not import numpy."""


def load_policy(
    path: Path | None, tenant: str | None, categories: tuple[str, ...]
) -> tuple[PolicyStore, str, TenantPolicy]:
    """The store, the tenant actually used and its policy, checked against the model's categories."""
    from rt_middleware.errors import UnknownTenantError
    from rt_middleware.policy import PolicyStore

    store = PolicyStore.from_file(path) if path else PolicyStore.default()
    store.require(categories=categories)
    if tenant is not None and tenant not in store.tenants:  # no silent fallback to the default tenant
        raise UnknownTenantError(
            f"unknown tenant {tenant!r}; the policy has: {', '.join(store.tenants)}", tenant_id=tenant
        )
    used, policy, _ = store.resolve(tenant)
    return store, used, policy


def drop_too_long(backend: BaseBackend, rows: list[LabeledPrompt], what: str) -> list[LabeledPrompt]:
    """Rows whose prompt fits the model's context; says how many were left out."""
    from rt_middleware.datasets import DatasetError
    from rt_middleware.evaluation import fits_context

    fits = fits_context(backend, [r.prompt for r in rows])
    kept = [r for r, ok in zip(rows, fits, strict=True) if ok]
    if len(kept) < len(rows):
        console.print(
            f"[yellow]{what}: left out {len(rows) - len(kept)} of {len(rows)} prompts longer than the "
            f"model's context ({backend.max_context} tokens)[/]",
            highlight=False,
        )
    if not kept:
        raise DatasetError(f"{what}: no prompt fits the model's context of {backend.max_context} tokens")
    return kept


def distributions(
    backend: BaseBackend,
    rows: list[LabeledPrompt],
    *,
    temperature: float,
    cache: Path | None,
    no_cache: bool,
    batch_size: int,
) -> list[FirstTokenDistribution]:
    """Unbiased distributions of every row, from the cache where possible (progress bar on misses)."""
    from rt_middleware.evaluation import DistributionCache, cached_distributions, default_cache_path

    store = DistributionCache(None if no_cache else (cache or default_cache_path()))
    before = len(store)
    dists = cached_distributions(
        backend, [r.prompt for r in rows], temperature=temperature, cache=store, batch_size=batch_size
    )
    where = "no cache" if no_cache else f"cache {store.path}"
    console.print(
        f"[dim]{len(rows)} prompts: {len(store) - before if not no_cache else len(rows)} model passes, "
        f"{where}[/]",
        highlight=False,
    )
    return dists


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def print_eval(result: EvalResult, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("label", "n", "refused", "rate", "95% CI"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, rate in result.rates.items():
        lo, hi = rate.interval
        name = "respond (false refusals)" if label == "respond" else label
        table.add_row(name, str(rate.total), str(rate.count), _fmt(rate.value), f"{_fmt(lo)} - {_fmt(hi)}")
    console.print(table)
    b = result.binary
    auc = f"  AUC={result.roc.auc:.3f}" if result.roc else ""
    console.print(
        f"should-refuse positive: TPR={_fmt(b.tpr)} FPR={_fmt(b.fpr)} precision={_fmt(b.precision)} "
        f"F1={_fmt(b.f1, pct=False)}{auc}",
        highlight=False,
    )
    if result.isolation:
        print_isolation(result.isolation, result.isolation_coverage)


def print_isolation(rows: list[Any], coverage: float) -> None:
    from rich.table import Table

    table = Table(
        title=f"isolation: one category's threshold from its {coverage:.0%}-coverage point to 1.0, "
        "others fixed"
    )
    columns = ("swept category", "t_min", "own rate (t_min -> 1.0)", "max other category Δ", "respond Δ")
    for column in columns:
        table.add_column(column, justify="left" if column == "swept category" else "right")
    for row in rows:
        worst = max((k for k in row.deltas if k != "respond"), key=row.deltas.__getitem__, default=None)
        worst_text = f"{100 * row.max_other_delta:.2f} pp" + (
            f" ({worst})" if row.max_other_delta > 0 else ""
        )
        respond = f"{100 * row.deltas['respond']:.2f} pp" if "respond" in row.deltas else "-"
        own = f"{_fmt(row.own_rates[0])} -> {_fmt(row.own_rates[1])}"
        table.add_row(row.category, f"{row.t_min:.3g}", own, worst_text, respond)
    console.print(table)


@app.command("eval")
def eval_command(
    dataset: Annotated[
        str, typer.Option("--dataset", help="coconot, xstest, or a FILE (JSONL/CSV: prompt, label).")
    ],
    model: ModelOption = "default",
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
    from rt_middleware.loading import load_backend

    with user_errors():
        backend = load_backend(model)
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
            result.judge = _judge(
                backend, load_backend(judge), rows, tenant_policy, result, out_dir, max_new_tokens
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
            f"judge mode: refusal rate {_fmt(j['refusal_rate'])}, agreement with first token "
            f"{_fmt(j['agreement'])}, unparsed {j['unparsed']}",
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
