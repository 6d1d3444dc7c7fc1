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
