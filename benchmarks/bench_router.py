"""What a refusal-token decision costs, measured in one run (ratios, not absolute times).

- decide / answer: one prefill (the decision) against a full answer of N tokens.
- router respond path / bare generation: the router's decision + continuation from the SAME KV
  cache against the backend generating the same answer with no decision at all (the overhead the
  router adds; ~1.0 means the decision is free because the prefill is reused).
- naive decide-then-generate / router: a guard that prefills twice (decision, then generation
  from scratch) against the router.
- router respond path / plain transformers generation (HF backends): `model.generate` greedy from
  the prompt plus the respond token, same ids and end tokens, so the same answer: everything the
  backend and router add on top of transformers (streamer thread, stopping criterion, decoding).

The paths run interleaved, round by round, so load on a shared machine hits them alike.

`--profile N` then profiles the router respond path and the bare generation (cProfile, every
thread) and prints the N functions with the most own time in each, to find what the router adds.

Usage: python benchmarks/bench_router.py [--model default|HF_DIR|file.gguf] [--tokens 32] [--repeats 5]
           [--profile 25] [--threads 1]
"""

from __future__ import annotations

import argparse

from _timing import PROMPTS, add_threads_option, interleaved, load, set_torch_threads

from rt_middleware.messages import ChatMessage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'default', an HF dir or a .gguf")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N own-time entries")
    add_threads_option(parser)
    args = parser.parse_args()
    set_torch_threads(args.threads)

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

    paths = {"decide": decide, "bare": bare_generation, "router": router_answer, "naive": naive_guard}
    plain = plain_generation(backend, args.tokens)
    if plain is not None:
        paths["plain"] = plain
    t = interleaved(paths, args.repeats)
    t_decide, t_bare, t_router, t_naive = t["decide"], t["bare"], t["router"], t["naive"]
    n = len(PROMPTS)
    print(f"model={backend.model_name} backend={type(backend).__name__} prompts={n} "
          f"max_new_tokens={args.tokens} repeats={args.repeats} (medians)")
    print(f"decision alone          {1000 * t_decide / n:8.1f} ms/prompt")
    print(f"bare generation         {1000 * t_bare / n:8.1f} ms/prompt")
    print(f"router (decide+answer)  {1000 * t_router / n:8.1f} ms/prompt")
    print(f"naive guard (2 prefills){1000 * t_naive / n:8.1f} ms/prompt")
    if "plain" in t:
        print(f"plain transformers gen. {1000 * t['plain'] / n:8.1f} ms/prompt")
    print(f"ratio decide / answer            {t_decide / t_router:6.3f}")
    print(f"ratio router / bare generation   {t_router / t_bare:6.3f}")
    print(f"ratio naive guard / router       {t_naive / t_router:6.3f}")
    if "plain" in t:
        print(f"ratio router / plain transformers{t_router / t['plain']:6.3f}")
    if args.profile:
        profiled = [("router respond path", router_answer), ("bare generation", bare_generation)]
        if plain is not None:
            profiled.append(("plain transformers generation", plain))
        for name, fn in profiled:
            print(f"\n== profile: {name} ({n} prompts, own time, all threads)")
            print(profile(fn, args.profile))


def plain_generation(backend, tokens: int):
    """For an HFBackend: transformers' own greedy generate of the router's answer, or None."""
    model = getattr(backend, "model", None)
    if model is None or not hasattr(model, "generate"):
        return None
    import torch

    respond = backend.tokens.id_for("respond")
    eos = backend._eos_ids or None  # the same end tokens the backend stops at
    starts = [torch.tensor([[*backend.encode([ChatMessage("user", p)]), respond]]) for p in PROMPTS]
    pad = backend.tokenizer.pad_token_id or 0

    def run() -> None:
        for ids in starts:
            with torch.inference_mode():
                model.generate(input_ids=ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                               max_new_tokens=tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad)

    return run


def profile(fn, top: int) -> str:
    """cProfile of `fn` in every thread (generation runs in a worker thread), top entries by own time."""
    import cProfile
    import io
    import pstats
    import threading

    profilers: list[cProfile.Profile] = []

    def start_in_thread(*_: object) -> None:  # threading.setprofile hook: one profiler per new thread
        prof = cProfile.Profile()
        profilers.append(prof)
        prof.enable()

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        fn()
    finally:
        main.disable()
        threading.setprofile(None)
        for prof in profilers:
            prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(main, stream=out)
    for prof in profilers:
        stats.add(prof)
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


if __name__ == "__main__":
    main()
