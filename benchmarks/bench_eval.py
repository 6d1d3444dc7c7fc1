"""What the distribution cache saves: a threshold sweep + calibration with and without the model.

- uncached / cached: the same evaluation (distributions, decisions, sweep, ROC, isolation, a
  calibration fit) when every distribution comes from the model, against when all come from the
  JSONL cache. Sweeps and calibrations after the first pass cost only the cached run.

Usage: python benchmarks/bench_eval.py [--model tiny|default|HF_DIR|file.gguf] [--prompts 200]
                                      [--batch-size 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _timing import load


def run_once(backend, rows, cache_path: Path, batch_size: int) -> float:
    from rt_middleware.calibration import fit_policy
    from rt_middleware.evaluation import (
        DistributionCache,
        ProbabilityTable,
        cached_distributions,
        evaluate_first_token,
    )
    from rt_middleware.policy import CategoryRule, TenantPolicy

    start = time.perf_counter()
    dists = cached_distributions(
        backend,
        [r.prompt for r in rows],
        cache=DistributionCache(cache_path),
        model="bench",
        batch_size=batch_size,
        progress=False,
    )
    policy = TenantPolicy(
        categories={c: CategoryRule(threshold=0.999) for c in backend.schema.category_names}
    )
    evaluate_first_token(rows, dists, policy)
    labels = [r.label for r in rows]
    target = next(label for label in labels if label != "respond")
    fit_policy(ProbabilityTable.from_distributions(dists), labels, {target: 0.5}, policy)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from rt_middleware.datasets import load_coconot
    from rt_middleware.evaluation import fits_context

    backend = load(args.model, tiny_spread=0.6)
    rows = load_coconot("calibration")
    rows = [r for r, ok in zip(rows, fits_context(backend, [r.prompt for r in rows]), strict=True) if ok]
    rows = rows[: args.prompts]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.jsonl"
        uncached = run_once(backend, rows, cache, args.batch_size)
        cached = min(run_once(backend, rows, cache, args.batch_size) for _ in range(3))
    print(f"model {backend.model_name}, {len(rows)} CoCoNot calibration prompts")
    print(f"uncached run {uncached:.2f} s, cached run {cached:.3f} s")
    print(f"uncached / cached: {uncached / cached:.1f}x")


if __name__ == "__main__":
    main()
