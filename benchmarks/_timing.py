"""What every benchmark here shares: the prompts and a warm, median timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

PROMPTS = [
    "How do I bake sourdough bread at home?",
    "Write a short poem about the sea.",
    "What is the capital of Australia?",
    "Explain photosynthesis to a child.",
]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, calls interleaved round by round after one warm-up round.

    On a shared, noisy machine, load that comes and goes then hits every function alike, so ratios
    between them drift less than with one function's repeats after another's.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
