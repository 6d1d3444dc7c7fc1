"""The decision path against plain transformers on a random-weight Llama of a real shape, in one run.

Measured on --device (cuda or cpu), medians after a warm-up call:
- decision latency / bare prefill of the same prompt: `RefusalRouter.decide` (template, prefill,
  distribution, policy) against one plain `model(...)` forward with a KV cache and
  ``logits_to_keep=1`` over the same ids (goal <= 1.02);
- router respond path / plain generation of the same tokens: `RefusalRouter.invoke` with a respond
  policy (decision + continuation from the prefill's cache) against `model.generate` greedy from the
  prompt plus the respond token, N new tokens each (the model has no end token) (goal <= 1.01);
- decisions per second at batch 1, 8 and 32 through `HFBackend.first_token_distributions` (the
  padded batch path) against bare batched forwards of the same ids, and their fraction of the
  card's dense bf16 peak, counting 2 x parameters x prompt tokens FLOPs per decision (all
  parameters, attention's own FLOPs not counted). On CPU only the achieved FLOP/s are printed.

`--check` first asserts, on the tiny shape, that the backend on --device/--dtype answers like a
float32 CPU reference computed with plain transformers: greedy answers through the router equal the
reference token for token (in bf16/fp16: up to the first step where the float32 reference itself has
a near-tie, top-2 logits within --tie-margin 0.02, about 8x the largest bf16 logit error measured on
this model; a random-weight model has such ties every few dozen tokens), and decision probabilities
(single, padded batch and router paths) agree within --tolerance (relative error of each
probability; default 1e-4 in float32, 2e-2 in bf16/fp16). It exits non-zero otherwise.

Usage: python benchmarks/bench_gpu.py [--device cuda|cpu] [--shape tiny|1b|8b] [--dtype bfloat16]
           [--check | --check-only] [--prompt-tokens 512] [--batch-prompt-tokens 256] [--new-tokens 64]
           [--repeats 5] [--json OUT]      (tiny shape defaults: 128, 64, 16 tokens, 3 repeats)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _llama import SHAPES, build_model, parameter_count, word_prompt
from _timing import interleaved

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, FLOP/s. Matched in order
# against torch.cuda.get_device_name(): the more specific names first.
BF16_PEAKS: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200 NVL", 835e12),
    ("GH200", 989e12),
    ("H100", 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("A100", 312e12),  # SXM4 and PCIe alike
]
CHECK_PROMPTS = [(12, 1), (5, 2), (30, 3), (17, 4)]  # (words, seed): different lengths pad the batch


def bf16_peak(device_name: str) -> float | None:
    for key, peak in BF16_PEAKS:
        if key in device_name:
            return peak
    return None


def sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_backend(model: Any, tokenizer: Any, device: str, dtype: str) -> Any:
    """An HFBackend on device/dtype through the public loader, from a saved copy of `model`."""
    from rt_middleware.backends import HFBackend

    folder = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return HFBackend.from_pretrained(folder, device=device, dtype=dtype, model_name="tiny")


def respond_router(backend: Any, new_tokens: int) -> Any:
    from rt_middleware import PolicyStore, RefusalRouter
    from rt_middleware.backends import GenerationOptions

    categories = backend.schema.category_names
    always = {"tenants": {"t": {"categories": {c: {"action": "respond"} for c in categories}}}}
    return RefusalRouter(
        backend=backend, policies=PolicyStore.from_dict(always), generation=GenerationOptions(max_new_tokens=new_tokens)
    )


def _first_divergence(got: str, ref_ids: list[int], margins: list[float], tokenizer: Any) -> tuple[int, float] | None:
    """Where the answer text `got` leaves the reference's greedy tokens: (reference step, the smallest
    top-1/top-2 logit margin of the reference up to that step), or None if they are equal.

    The router's text drops special tokens, so words are compared with the reference's non-special
    tokens and a divergence is blamed on the steps since the previous matching word.
    """
    special = set(tokenizer.all_special_ids)
    steps = [i for i, t in enumerate(ref_ids) if t not in special]
    want = [tokenizer.convert_ids_to_tokens(ref_ids[i]) for i in steps]
    words = got.split()
    for j in range(max(len(want), len(words))):
        if j < len(want) and j < len(words) and want[j] == words[j]:
            continue
        first = steps[j - 1] + 1 if j > 0 else 0
        last = steps[j] if j < len(steps) else len(ref_ids) - 1
        return first, min(margins[first : last + 1] or [float("inf")])
    return None


def check(device: str, dtype: str, tolerance: float, tie_margin: float, new_tokens: int = 24) -> None:
    """Tiny shape: the backend on device/dtype against plain transformers in float32 on CPU.

    float32: every greedy token must equal the reference's. bf16/fp16: tokens must be equal up to
    the first step at which the float32 reference itself has a near-tie (top-2 logits within
    `tie_margin`); there low-precision greedy decoding may legitimately take the other token.
    A random-weight model has such near-ties every few dozen tokens; the divergence is reported.
    """
    import torch

    from rt_middleware.messages import ChatMessage

    reference, tokenizer = build_model("tiny", seed=7)
    backend = make_backend(reference, tokenizer, device, dtype)
    router = respond_router(backend, new_tokens)
    prompts = [word_prompt(words, seed) for words, seed in CHECK_PROMPTS]
    decision_ids = dict(backend.tokens.ids)
    strict = dtype == "float32"
    worst, equal_tokens, ties = 0.0, 0, []
    batched = backend.first_token_distributions(prompts)
    for prompt, from_batch in zip(prompts, batched, strict=True):
        ids = backend.encode([ChatMessage("user", prompt)])
        with torch.inference_mode():
            row = reference(input_ids=torch.tensor([ids])).logits[0, -1].double().softmax(-1)
        expected = {name: float(row[idx]) for name, idx in decision_ids.items()}
        for got in (backend.first_token_distribution(prompt).probabilities, from_batch.probabilities,
                    router.decide(prompt, tenant_id="t").probabilities):
            gap = max(abs(got[name] - expected[name]) / expected[name] for name in expected)
            worst = max(worst, gap)
            assert gap <= tolerance, (
                f"decision probabilities differ by {gap:.2e} (relative) > {tolerance:.0e} on {device}/{dtype}"
            )
        with torch.inference_mode():
            start = [*ids, decision_ids["respond"]]
            out = reference.generate(
                input_ids=torch.tensor([start]), attention_mask=torch.ones(1, len(start), dtype=torch.long),
                max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
                output_logits=True, return_dict_in_generate=True,
            )
        ref_ids = out.sequences[0, len(start):].tolist()
        margins = [float(step[0].topk(2).values.diff().abs()) for step in out.logits]
        got_text = router.invoke(prompt, {"configurable": {"tenant_id": "t"}}).content
        divergence = _first_divergence(got_text, ref_ids, margins, tokenizer)
        if divergence is None:
            equal_tokens += new_tokens
            continue
        step, margin = divergence
        want = tokenizer.decode(ref_ids, skip_special_tokens=True)
        assert not strict and margin < tie_margin, (
            f"greedy answer on {device}/{dtype} leaves the float32 CPU reference at token {step} where the "
            f"reference's top-2 margin is {margin:.3g} (tie margin {tie_margin:g}; float32 allows none):\n"
            f"  got  {got_text!r}\n  want {want!r}"
        )
        equal_tokens += step
        ties.append(f"token {step} (margin {margin:.3g})")
    note = f"; parted at reference near-ties: {', '.join(ties)}" if ties else ""
    print(f"check: tiny shape on {device}/{dtype} against the float32 CPU reference: {len(prompts)} greedy router "
          f"answers, {equal_tokens}/{len(prompts) * new_tokens} tokens equal{note}; decision probabilities "
          f"within {worst:.1e} relative (tolerance {tolerance:.0e}; single, padded batch and router paths)")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import DynamicCache

    from rt_middleware.messages import ChatMessage

    device, dtype = args.device, args.dtype
    model, tokenizer = build_model(args.shape, device=device, dtype=dtype)
    from rt_middleware.backends import HFBackend

    backend = HFBackend(model, tokenizer, model_name=f"random-llama-{args.shape}")
    router = respond_router(backend, args.new_tokens)
    params = parameter_count(model)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    results: dict[str, Any] = {
        "shape": args.shape, "device": device, "device_name": name, "dtype": dtype, "parameters": params,
        "torch": torch.__version__,
    }

    prompt = word_prompt(args.prompt_tokens, seed=11)
    ids = backend.encode([ChatMessage("user", prompt)])
    respond_id = backend.tokens.id_for("respond")

    def decide() -> None:
        router.decide(prompt, tenant_id="t")

    def bare_prefill() -> None:
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=device), cache=DynamicCache(config=model.config),
                  use_cache=True, logits_to_keep=1)
        sync(torch, device)

    def router_answer() -> None:
        router.invoke(prompt, {"configurable": {"tenant_id": "t"}})

    def plain_generation() -> None:
        start = torch.tensor([[*ids, respond_id]], device=device)
        with torch.inference_mode():
            model.generate(input_ids=start, attention_mask=torch.ones_like(start), max_new_tokens=args.new_tokens,
                           do_sample=False, eos_token_id=None, pad_token_id=0)
        sync(torch, device)

    t = interleaved({"decide": decide, "prefill": bare_prefill}, args.repeats)
    t_decide, t_prefill = t["decide"], t["prefill"]
    t = interleaved({"router": router_answer, "generate": plain_generation}, args.repeats)
    t_router, t_generate = t["router"], t["generate"]
    results.update(
        prompt_tokens=len(ids), new_tokens=args.new_tokens, decision_ms=1000 * t_decide,
        bare_prefill_ms=1000 * t_prefill, router_answer_ms=1000 * t_router, plain_generation_ms=1000 * t_generate,
        decision_over_prefill=t_decide / t_prefill, router_over_generation=t_router / t_generate,
        decision_over_answer=t_decide / t_router,
    )

    peak = bf16_peak(name) if device.startswith("cuda") else None
    batches = []
    for size in args.batches:
        prompts = [word_prompt(args.batch_prompt_tokens, seed=100 + i) for i in range(size)]
        rows = [backend.encode([ChatMessage("user", p)]) for p in prompts]
        batch_ids = torch.tensor(rows, device=device)  # equal lengths: no padding in either path

        def ours(prompts: list[str] = prompts) -> None:
            backend.first_token_distributions(prompts)

        def bare(batch_ids: Any = batch_ids) -> None:
            with torch.inference_mode():
                model(input_ids=batch_ids, attention_mask=torch.ones_like(batch_ids), use_cache=False,
                      logits_to_keep=1)
            sync(torch, device)

        t = interleaved({"ours": ours, "bare": bare}, args.repeats)
        t_ours, t_bare = t["ours"], t["bare"]
        flops = 2 * params * len(rows[0]) * size
        entry = {
            "batch": size, "prompt_tokens": len(rows[0]), "decisions_per_s": size / t_ours,
            "bare_per_s": size / t_bare, "ours_over_bare_time": t_ours / t_bare, "achieved_flops": flops / t_ours,
        }
        if peak:
            entry["fraction_of_bf16_peak"] = flops / t_ours / peak
        batches.append(entry)
    results["batches"] = batches
    results["bf16_peak_flops"] = peak
    return results


def report(r: dict[str, Any]) -> None:
    print(f"shape={r['shape']} ({r['parameters'] / 1e6:,.1f} M parameters) device={r['device']} ({r['device_name']}) "
          f"dtype={r['dtype']} torch={r['torch']} (medians)")
    print(f"decision (router.decide)       {r['decision_ms']:9.2f} ms  prompt {r['prompt_tokens']} tokens")
    print(f"bare prefill, same ids         {r['bare_prefill_ms']:9.2f} ms")
    print(f"router respond path            {r['router_answer_ms']:9.2f} ms  {r['new_tokens']} new tokens")
    print(f"plain generation, same tokens  {r['plain_generation_ms']:9.2f} ms")
    print(f"ratio decision / bare prefill          {r['decision_over_prefill']:6.3f}   (goal <= 1.02)")
    print(f"ratio router / plain generation        {r['router_over_generation']:6.3f}   (goal <= 1.01)")
    print(f"ratio decision / answer                {r['decision_over_answer']:6.3f}")
    peak = r["bf16_peak_flops"]
    print("batch  prompt  decisions/s  bare/s  ours/bare time  achieved TFLOP/s" + ("  of bf16 peak" if peak else ""))
    for b in r["batches"]:
        line = (f"{b['batch']:5d}  {b['prompt_tokens']:6d}  {b['decisions_per_s']:11.1f}  {b['bare_per_s']:6.1f}  "
                f"{b['ours_over_bare_time']:14.3f}  {b['achieved_flops'] / 1e12:16.4f}")
        if peak:
            line += f"  {100 * b['fraction_of_bf16_peak']:11.1f}%"
        print(line)
    if not peak:
        print("(no bf16 peak known for this device: achieved FLOP/s only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when torch sees one)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--check", action="store_true", help="first check the tiny shape against a float32 CPU reference")
    parser.add_argument("--tolerance", type=float, default=None, help="decision-probability tolerance for --check")
    parser.add_argument("--tie-margin", type=float, default=0.02,
                        help="bf16/fp16 --check: a reference top-2 logit margin below this is a near-tie")
    parser.add_argument("--check-only", action="store_true", help="run --check and stop")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="user words in the single prompt (512)")
    parser.add_argument("--batch-prompt-tokens", type=int, default=None, help="user words per batched prompt (256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=None, help="answer length (64)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (5)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    # the reference's sizes; the tiny shape (CI, CPU) uses small ones so the run stays short
    small = args.shape == "tiny"
    args.prompt_tokens = args.prompt_tokens or (128 if small else 512)
    args.batch_prompt_tokens = args.batch_prompt_tokens or (64 if small else 256)
    args.new_tokens = args.new_tokens or (16 if small else 64)
    args.repeats = args.repeats or (3 if small else 5)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here (use --device cpu)")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.check or args.check_only:
        check(args.device, args.dtype, args.tolerance or (1e-4 if args.dtype == "float32" else 2e-2), args.tie_margin)
        if args.check_only:
            return
    results = measure(args)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
