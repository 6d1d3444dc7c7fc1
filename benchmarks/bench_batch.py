"""Batched decisions through the router, measured in one run (ratios, not absolute times).

- decisions per second at batch 1, 8 and 32 (a tenant that refuses everything, so a call is its
  decision alone): `router.batch` (one padded prefill per batch) against the same inputs invoked
  one after another, and against LangChain's default `Runnable.batch` (a thread per input, each
  invoking alone: what `router.batch` did before).
- concurrent callers (8 threads, each invoking one input at a time, as concurrent agents do): with
  `backend.coalesce_requests(window_ms=2)` against without.
- the respond path at batch 8 (every input answered, `--tokens` new tokens): `router.batch`, whose
  answers continue from their own rows of the batch's cache, against invoking one by one, the
  default `Runnable.batch`, and batched decisions whose answers prefill again alone (what row caches
  save).

Paths run interleaved, round by round, so load on a shared machine hits them alike.

Usage: python benchmarks/bench_batch.py [--model tiny|default|HF_DIR] [--tokens 16] [--repeats 3]
           [--sizes 1,8,32] [--respond-batch 8] [--threads 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from _timing import PROMPTS, add_threads_option, interleaved, load, set_torch_threads
from langchain_core.runnables import RunnableSerializable

ASKS = ["", " Answer briefly.", " Please explain your reasoning step by step, with an example.",
        " Keep it short.", " I am asking for a school project about the topic, due next week.", " Thanks!",
        " Write it for a ten-year-old reader who has never heard of it before.", " Why?"]
INPUTS = [p + ask for ask in ASKS for p in PROMPTS]
"""32 prompts of mixed lengths, so batches are left-padded."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'default' or an HF dir")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--respond-batch", type=int, default=8)
    add_threads_option(parser)
    args = parser.parse_args()
    set_torch_threads(args.threads)

    from rt_middleware import PolicyStore, RefusalRouter
    from rt_middleware.backends import GenerationOptions

    backend = load(args.model)
    categories = backend.schema.category_names
    store = PolicyStore.from_dict({"tenants": {
        "refuse": {"categories": {c: {"action": "refuse", "threshold": 0.0} for c in categories}},
        "answer": {"categories": {c: {"action": "respond"} for c in categories}},
    }})
    options = GenerationOptions(max_new_tokens=args.tokens)
    router = RefusalRouter(backend=backend, policies=store, generation=options)
    refuse, answer = {"configurable": {"tenant_id": "refuse"}}, {"configurable": {"tenant_id": "answer"}}

    def paths(inputs: list[str], cfg: dict) -> dict:
        return {
            "batch": lambda: router.batch(inputs, cfg),
            "one by one": lambda: [router.invoke(x, cfg) for x in inputs],
            "Runnable.batch": lambda: RunnableSerializable.batch(router, inputs, cfg),
        }

    print(f"model={backend.model_name} backend={type(backend).__name__} torch_threads={args.threads} "
          f"repeats={args.repeats} (medians)")
    print("decisions per second (tenant refuses everything: the decision alone)")
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        inputs = (INPUTS * (n // len(INPUTS) + 1))[:n]
        t = interleaved(paths(inputs, refuse), args.repeats)
        rates = {name: n / seconds for name, seconds in t.items()}
        print(f"  batch {n:3d}: " + "  ".join(f"{name} {rate:8.1f}/s" for name, rate in rates.items())
              + f"  | batch / one by one {rates['batch'] / rates['one by one']:5.2f}"
              + f"  batch / Runnable.batch {rates['batch'] / rates['Runnable.batch']:5.2f}")

    def concurrent(window_ms: float | None, threads: int = 8) -> Callable[[], None]:
        def call() -> None:
            backend.coalesce_requests(window_ms, max_batch_size=threads)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda x: router.invoke(x, refuse), INPUTS))
            finally:
                backend.coalesce_requests(None)
        return call

    t = interleaved({"coalesced": concurrent(2.0), "alone": concurrent(None)}, args.repeats)
    n = len(INPUTS)
    print(f"8 threads invoking {n} inputs: coalesced (window 2 ms) {n / t['coalesced']:8.1f}/s  "
          f"alone {n / t['alone']:8.1f}/s  | coalesced / alone {t['alone'] / t['coalesced']:5.2f}")

    n = args.respond_batch
    inputs = INPUTS[:n]

    def decide_batched_then_prefill_again() -> None:
        """Batched decisions without row caches: each answer prefills its prompt again."""
        distributions = backend.first_token_distributions(inputs, batch_size=n)
        assert len(distributions) == n
        for x in inputs:
            backend.generate(backend.prefill(x), "respond", options)

    respond = {**paths(inputs, answer), "re-prefill": decide_batched_then_prefill_again}
    t = interleaved(respond, args.repeats)
    print(f"respond path, batch {n}, max_new_tokens={args.tokens} (ms per input)")
    print("  " + "  ".join(f"{name} {1000 * s / n:8.1f}" for name, s in t.items()))
    for other in ("one by one", "Runnable.batch", "re-prefill"):
        print(f"  ratio batch / {other:15s} {t['batch'] / t[other]:6.3f}")


if __name__ == "__main__":
    main()
