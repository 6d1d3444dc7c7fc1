"""Plotting, a leaf both evaluation and training use: matplotlib on the Agg backend, PNG files.

Needs the ``eval`` (or ``train``) extra; matplotlib loads on the first plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rt_middleware._extras import require

__all__ = ["plot_loss_curve", "pyplot", "save_figure"]


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no display needed)."""
    matplotlib = require("matplotlib", extra="eval", feature="evaluation plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Write `fig` as a PNG at `path` (folders created) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def plot_loss_curve(losses: Sequence[float], path: Path, *, title: str = "training loss") -> Path:
    """Per-step training loss with a moving average (single steps are noisy at small batches)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.7", linewidth=1, label="per step")
    window = max(1, len(losses) // 20)
    if window > 1:
        totals = np.concatenate([[0.0], np.cumsum(losses)])
        end = np.arange(1, len(losses) + 1)
        start = np.maximum(0, end - window)
        smooth = (totals[end] - totals[start]) / (end - start)
        ax.plot(steps, smooth, color="C0", linewidth=2, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
