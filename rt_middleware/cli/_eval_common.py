"""Helpers shared by `rt eval` and `rt calibrate`: the policy, prompts that fit, cached distributions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rt_middleware.cli.common import console

if TYPE_CHECKING:
    from rt_middleware.backends.base import BaseBackend
    from rt_middleware.datasets import LabeledPrompt
    from rt_middleware.distribution import FirstTokenDistribution
    from rt_middleware.policy import PolicyStore, TenantPolicy

__all__ = ["distributions", "drop_too_long", "fmt", "load_policy", "print_isolation"]


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


def fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


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
        own = f"{fmt(row.own_rates[0])} -> {fmt(row.own_rates[1])}"
        table.add_row(row.category, f"{row.t_min:.3g}", own, worst_text, respond)
    console.print(table)
