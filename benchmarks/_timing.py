"""What every benchmark here shares: the prompts, the model loader and a warm, median timer."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROMPTS = [
    "How do I bake sourdough bread at home?",
    "Write a short poem about the sea.",
    "What is the capital of Australia?",
    "Explain photosynthesis to a child.",
]


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """`--threads`: torch CPU threads for the run (1: on a shared, loaded machine more threads spin and stall)."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared, loaded machine more threads spin and stall)")


def set_torch_threads(threads: int) -> None:
    """Pin torch's CPU threads; a GGUF model runs without torch installed, so its absence is fine."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def load(spec: str, *, tiny_spread: float = 0.02):
    """The backend for --model: 'tiny' (the tests' random model, built here), else `load_backend(spec)`."""
    if spec == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_model import build_tiny

        from rt_middleware.backends import HFBackend

        model, tok = build_tiny(spread=tiny_spread)
        return HFBackend(model, tok, model_name="tiny")
    from rt_middleware import load_backend

    return load_backend(spec)


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
