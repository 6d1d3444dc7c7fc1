"""`rt eval`: refusal metrics of a model under a tenant policy, from cached first-token distributions,
plus the opener rate (benign answers after a forced `[respond]` that open with refusal text)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

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
from rt_middleware.cli.common import check_writable, console, user_errors

if TYPE_CHECKING:
    from rt_middleware.backends.base import BaseBackend
    from rt_middleware.datasets import LabeledPrompt
    from rt_middleware.evaluation import EvalResult
    from rt_middleware.policy import TenantPolicy


def print_eval(result: EvalResult, title: str) -> None:
    from rich.table import Table

    table = Table(title=Text(title))  # dataset, model and tenant names are text, never markup
    for column in ("label", "n", "refused", "rate", "95% CI"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, rate in result.rates.items():
        lo, hi = rate.interval
        name = "respond (false refusals)" if label == "respond" else label
        table.add_row(Text(name), str(rate.total), str(rate.count), fmt(rate.value), f"{fmt(lo)} - {fmt(hi)}")
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
        str,
        typer.Option(
            "--dataset",
            help="coconot, xstest, alpaca-eval (benign only), or a FILE (JSONL/CSV: prompt, label).",
        ),
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
    opener_tokens: Annotated[
        int,
        typer.Option(
            "--opener-tokens",
            min=0,
            help="Opener rate: greedy tokens generated after a forced \\[respond] for each benign "
            "prompt (label respond), checked for refusal text. 0 turns it off.",
        ),
    ] = 24,
    opener_limit: Annotated[
        int | None,
        typer.Option(
            "--opener-limit",
            min=1,
            help="Measure the opener rate on a seeded sample of at most this many benign prompts.",
        ),
    ] = None,
) -> None:
    """Per-label refusal rates, TPR/FPR/F1, threshold sweep, ROC and isolation, and the opener rate;
    plots and a JSON report."""
    from rt_middleware.evaluation import (
        evaluate_first_token,
        load_eval_rows,
        opener_rate,
        opener_rows,
        write_eval_report,
    )

    with user_errors():
        if out is not None:
            check_writable(out, folder=True)
        backend = load_model(model, device=device, dtype=dtype)
        categories = backend.schema.category_names
        store, used_tenant, tenant_policy = load_policy(policy, tenant, categories)
        name, rows = load_eval_rows(
            dataset, categories=categories, split=split, holdout_fraction=holdout_fraction, seed=seed
        )
        out_dir = out or Path("rt-eval") / name
        if out is None:  # a given --out was checked before the model loaded
            check_writable(out_dir, folder=True)
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
        benign = opener_rows(rows, limit=opener_limit, seed=seed) if opener_tokens else []
        if benign:
            result.openers = opener_rate(backend, benign, max_new_tokens=opener_tokens, progress=True)
            result.opener_rows = benign
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
            "mode": "first-token" + (" + openers" if benign else "") + (" + judge" if judge else ""),
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
    if result.openers is not None:
        print_openers(result.openers, title=f"answers after [respond] that open with refusal text ({name})")
    for kind, path in paths.items():
        console.print(f"[dim]{kind}:[/] {escape(str(path))}", highlight=False)


def print_openers(openers: dict[str, Any], title: str, examples: int = 3) -> None:
    """Overall and per-group opener rates, then a few detected answers (prompt and answer cut short)."""
    from rich.table import Table

    table = Table(title=escape(title))
    for column in ("group", "n", "refusal opener", "rate", "95% CI"):
        table.add_column(column, justify="left" if column == "group" else "right")
    groups = openers["per_group"] if len(openers["per_group"]) > 1 else {}
    for group, rate in [*groups.items(), ("all benign", openers)]:
        lo, hi = rate["ci95"]
        table.add_row(group, str(rate["total"]), str(rate["count"]), fmt(rate["rate"]), f"{fmt(lo)} - {fmt(hi)}")
    console.print(table)
    console.print(f"[dim]{openers['max_new_tokens']} greedy tokens per answer[/]", highlight=False)
    for example in openers["examples"][:examples]:
        prompt = " ".join(str(example.get("prompt", example.get("id", ""))).split())
        answer = " ".join(example["answer"].split())
        console.print(f"  {_cut(prompt, 60)!r} -> {_cut(answer, 90)!r}", markup=False, highlight=False)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
