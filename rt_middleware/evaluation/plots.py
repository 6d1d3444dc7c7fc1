"""PNG plots of sweeps, ROC, rates with intervals and isolation (on `rt_middleware.plots`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rt_middleware.plots import pyplot, save_figure

if TYPE_CHECKING:
    from rt_middleware.evaluation.metrics import Rate
    from rt_middleware.evaluation.sweep import IsolationRow, RocCurve, ThresholdSweep

__all__ = ["plot_isolation", "plot_rate_curves", "plot_rates", "plot_roc"]


def plot_rate_curves(
    sweep: ThresholdSweep,
    path: Path,
    *,
    title: str = "",
    xlabel: str = "threshold on category probability (same for every category)",
) -> Path:
    """Each label's refusal rate against the common threshold (log x: probabilities span decades)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    x = sweep.thresholds.clip(min=1e-9)
    for name, rates in sweep.rates.items():
        style = {"color": "black", "linestyle": "--", "linewidth": 2} if name == "respond" else {}
        ax.plot(x, rates, label="respond (false refusals)" if name == "respond" else name, **style)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("refusal rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "refusal rate vs threshold")
    return save_figure(fig, path)


def plot_roc(roc: RocCurve, path: Path, *, title: str = "") -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(roc.fpr, roc.tpr, marker=".", label=f"AUC = {roc.auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-refusal rate (should answer, refused)")
    ax.set_ylabel("true-refusal rate (should refuse, refused)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "ROC (common threshold sweep)")
    return save_figure(fig, path)


def plot_rates(
    rates: Mapping[str, Rate], path: Path, *, targets: Mapping[str, float] | None = None, title: str = ""
) -> Path:
    """Bars of refusal rate per label with Wilson 95% intervals, and target markers if given."""
    plt = pyplot()
    names = list(rates)
    values = [rates[n].value or 0.0 for n in names]
    lows = [max(0.0, v - rates[n].interval[0]) for n, v in zip(names, values, strict=True)]
    highs = [max(0.0, rates[n].interval[1] - v) for n, v in zip(names, values, strict=True)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = ["grey" if n == "respond" else "tab:blue" for n in names]
    ax.bar(range(len(names)), values, yerr=[lows, highs], capsize=4, color=colors)
    for i, name in enumerate(names):
        if targets and name in targets:
            ax.plot(
                [i - 0.4, i + 0.4],
                [targets[name]] * 2,
                color="tab:red",
                linewidth=2,
                label="target" if i == min(j for j, n in enumerate(names) if n in targets) else None,
            )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n(n={rates[n].total})" for n in names], fontsize=7, rotation=15)
    ax.set_ylabel("refusal rate (95% Wilson CI)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    if targets:
        ax.legend()
    ax.set_title(title or "refusal rate per label")
    return save_figure(fig, path)


def plot_isolation(rows: Sequence[IsolationRow], path: Path, *, title: str = "") -> Path:
    """Heatmap: change (pp) of each label's rate while one category's threshold spans its band."""
    plt = pyplot()
    swept = [r.category for r in rows]
    labels = sorted({k for r in rows for k in r.deltas} | set(swept), key=lambda n: (n == "respond", n))
    grid = [[(100 * r.deltas[k]) if k in r.deltas else float("nan") for k in labels] for r in rows]
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 2.5, 0.7 * len(rows) + 2))
    top = max((v for g in grid for v in g if v == v), default=0.0)
    image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=max(2.0, top), aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            text = "self" if value != value else f"{value:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7, rotation=25, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(swept, fontsize=7)
    ax.set_xlabel("label whose refusal rate is measured")
    ax.set_ylabel("category whose threshold is swept")
    fig.colorbar(image, ax=ax, label="rate change (pp)")
    ax.set_title(title or "cross-category isolation")
    return save_figure(fig, path)
