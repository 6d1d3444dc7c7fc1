"""llama.cpp vs transformers on the same weights, measured in one run (ratios, not absolute times).

- decision: one prefill of the chat-formatted prompt (what a routing decision costs);
- continuation: generating up to N greedy tokens from that prefill's KV cache.

A ratio below 1 means llama.cpp is faster. Each library keeps its default threads: llama.cpp's
spin-waiting thread pool collapses when its threads outnumber the free cores (a busy machine).
The tiny model is built and exported here; `--default` adds the shipped default model (HF weights vs
its f16 GGUF) when `rt_middleware.default_model` can build it.

Usage: python benchmarks/bench_backends.py [--default] [--pair HF_DIR GGUF] [--tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rt_middleware.backends import BaseBackend

from _timing import PROMPTS, median_seconds


def measure(backend: BaseBackend, tokens: int, repeats: int) -> tuple[float, float]:
    """Median seconds of a decision (prefill) and of a continuation of `tokens` greedy tokens."""
    from rt_middleware.backends import GenerationOptions

    options = GenerationOptions(max_new_tokens=tokens)
    decide = median_seconds(lambda: [backend.prefill(p) for p in PROMPTS], repeats) / len(PROMPTS)

    def continue_all() -> float:
        spent = 0.0
        for prompt in PROMPTS:
            prefill = backend.prefill(prompt)
            start = time.perf_counter()
            backend.generate(prefill, options=options)
            spent += time.perf_counter() - start
        return spent

    continue_all()  # warm-up
    cont = statistics.median(continue_all() for _ in range(repeats)) / len(PROMPTS)
    return decide, cont


def report(name: str, pairs: dict[str, BaseBackend], tokens: int, repeats: int) -> None:
    results = {label: measure(backend, tokens, repeats) for label, backend in pairs.items()}
    hf_decide, hf_cont = results["transformers"]
    print(f"{name}: transformers decision {hf_decide * 1e3:.1f} ms, continuation ({tokens} tok) "
          f"{hf_cont * 1e3:.1f} ms")
    for label, (decide, cont) in results.items():
        if label != "transformers":
            print(f"  {label:<28} decision ratio {decide / hf_decide:5.2f}   continuation ratio {cont / hf_cont:5.2f}")


def tiny_pairs(folder: Path) -> dict[str, BaseBackend]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import save_tiny

    from rt_middleware.backends import HFBackend, LlamaCppBackend
    from rt_middleware.gguf_export import export_gguf

    hf_dir = save_tiny(folder / "tiny")
    f32 = export_gguf(hf_dir, folder / "tiny-f32.gguf", dtype="f32")
    return {
        "transformers": HFBackend.from_pretrained(hf_dir),
        "llama.cpp f32 GGUF, F16 KV": LlamaCppBackend(f32),
        "llama.cpp f32 GGUF, F32 KV": LlamaCppBackend(f32, f32_kv_cache=True),
    }


def default_pairs() -> dict[str, BaseBackend] | None:
    try:
        from rt_middleware import default_model
        from rt_middleware.backends import LlamaCppBackend
        from rt_middleware.errors import RTError

        hf = default_model.load_default_backend("hf")
        gguf = default_model.materialize_default_model("llamacpp")
        return {"transformers": hf, "llama.cpp f16 GGUF, F16 KV": LlamaCppBackend(gguf)}
    except (ImportError, AttributeError, RTError) as exc:
        print(f"default model skipped: {type(exc).__name__}: {exc}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--default", action="store_true", help="also measure the shipped default model")
    parser.add_argument("--pair", nargs=2, metavar=("HF_DIR", "GGUF"), help="also measure this model pair")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args, _ = parser.parse_known_args()  # run_all.py passes every benchmark the same arguments
    import os

    import torch

    print(f"cores: {os.cpu_count()}; torch threads: {torch.get_num_threads()}; llama.cpp threads: its default "
          f"(decode {max((os.cpu_count() or 2) // 2, 1)}, prompt {os.cpu_count()}); prompts: {len(PROMPTS)}; "
          f"repeats: {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as folder:
        report("tiny model", tiny_pairs(Path(folder)), args.tokens, args.repeats)
    if args.pair:
        from rt_middleware.backends import HFBackend, LlamaCppBackend

        hf_dir, gguf = args.pair
        pair = {"transformers": HFBackend.from_pretrained(hf_dir), "llama.cpp, F16 KV": LlamaCppBackend(gguf)}
        report(f"{Path(hf_dir).name} vs {Path(gguf).name}", pair, args.tokens, args.repeats)
    if args.default:
        pairs = default_pairs()
        if pairs is not None:
            report("default model", pairs, args.tokens, args.repeats)


if __name__ == "__main__":
    main()
