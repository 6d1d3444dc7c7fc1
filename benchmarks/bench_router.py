"""What a refusal-token decision costs, measured in one run (ratios, not absolute times).

- decide / answer: one prefill (the decision) against a full answer of N tokens.
- router respond path / bare generation: the router's decision + continuation from the SAME KV
  cache against the backend generating the same answer with no decision at all (the overhead the
  router adds; ~1.0 means the decision is free because the prefill is reused).
- naive decide-then-generate / router: a guard that prefills twice (decision, then generation
  from scratch) against the router.

Usage: python benchmarks/bench_router.py [--model default|HF_DIR|file.gguf] [--tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _timing import PROMPTS, median_seconds


def load(spec: str):
    from rt_middleware import load_backend

    if spec == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_model import build_tiny

        from rt_middleware.backends import HFBackend

        model, tok = build_tiny(spread=0.02)
        return HFBackend(model, tok, model_name="tiny")
    return load_backend(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'default', an HF dir or a .gguf")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from rt_middleware import PolicyStore, RefusalRouter
    from rt_middleware.backends import GenerationOptions

    backend = load(args.model)
    categories = backend.schema.category_names
    never = {"tenants": {"t": {"categories": {c: {"action": "respond"} for c in categories}}}}
    options = GenerationOptions(max_new_tokens=args.tokens)
    # stop only at max_new_tokens so every path generates the same number of tokens
    router = RefusalRouter(backend=backend, policies=PolicyStore.from_dict(never), generation=options)
    cfg = {"configurable": {"tenant_id": "t"}}

    def decide() -> None:
        for p in PROMPTS:
            router.decide(p, tenant_id="t")

    def bare_generation() -> None:
        for p in PROMPTS:
            backend.generate(backend.prefill(p), "respond", options)

    def router_answer() -> None:
        for p in PROMPTS:
            router.invoke(p, cfg)

    def naive_guard() -> None:
        for p in PROMPTS:
            backend.first_token_distribution(p)
            backend.generate(backend.prefill(p), "respond", options)

    t_decide = median_seconds(decide, args.repeats)
    t_bare = median_seconds(bare_generation, args.repeats)
    t_router = median_seconds(router_answer, args.repeats)
    t_naive = median_seconds(naive_guard, args.repeats)
    n = len(PROMPTS)
    print(f"model={backend.model_name} backend={type(backend).__name__} prompts={n} "
          f"max_new_tokens={args.tokens} repeats={args.repeats} (medians)")
    print(f"decision alone          {1000 * t_decide / n:8.1f} ms/prompt")
    print(f"bare generation         {1000 * t_bare / n:8.1f} ms/prompt")
    print(f"router (decide+answer)  {1000 * t_router / n:8.1f} ms/prompt")
    print(f"naive guard (2 prefills){1000 * t_naive / n:8.1f} ms/prompt")
    print(f"ratio decide / answer            {t_decide / t_router:6.3f}")
    print(f"ratio router / bare generation   {t_router / t_bare:6.3f}")
    print(f"ratio naive guard / router       {t_naive / t_router:6.3f}")


if __name__ == "__main__":
    main()
