"""`rt train` smoke run on any device: LoRA and full fine-tuning of a tiny random Llama for a few
steps, then the outputs load back on the same device and answer.

It checks that the training path works end to end on --device/--dtype (finite losses, artifact and
model load back, decision probabilities finite), not that anything is learnt.

Usage: python benchmarks/train_smoke.py [--device cuda] [--dtype bfloat16] [--steps 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from _llama import build_model, word_prompt

LABELS = ["respond", "Requests with safety concerns", "Incomplete requests", "Unsupported requests",
          "Indeterminate requests", "Humanizing requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    from rt_middleware.backends import HFBackend
    from rt_middleware.cli.app import app
    from rt_middleware.train import apply_artifact

    hf_logging.disable_progress_bar()
    out = args.out or Path(tempfile.mkdtemp(prefix="train-smoke-"))
    model, tokenizer = build_model("tiny", seed=3)
    base = out / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = out / "toy.jsonl"
    rows = [{"prompt": word_prompt(8 + i % 5, seed=i), "label": LABELS[i % len(LABELS)],
             "response": word_prompt(6, seed=1000 + i) if i % len(LABELS) == 0 else None} for i in range(24)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for method in ("lora", "full"):
        run = out / method
        argv = ["train", "--model", str(base), "--data", str(data), "--out", str(run), "--max-steps", str(args.steps),
                "--batch-size", "4", "--device", args.device, "--dtype", args.dtype, f"--{method}", "--restart"]
        app(argv, standalone_mode=False)
        manifest = json.loads((run / "manifest.json").read_text())
        losses = manifest["loss_curve"]
        assert len(losses) == args.steps and all(math.isfinite(x) for x in losses), losses
        backend = HFBackend.from_pretrained(run / "model", device=args.device, dtype=args.dtype)
        probs = backend.first_token_distribution(word_prompt(10, seed=99)).probabilities
        assert all(math.isfinite(p) for p in probs.values()), probs
        line = f"{method}: {args.steps} steps on {args.device}/{args.dtype}, losses {[round(x, 3) for x in losses]}; "
        line += f"model/ loads back on {args.device} ({manifest['train']['dtype']})"
        if method == "lora":
            fresh, fresh_tok = build_model("tiny", seed=3)
            schema = apply_artifact(fresh, fresh_tok, run / "artifact")
            rebuilt = HFBackend(fresh.to(args.device), fresh_tok, schema=schema)
            again = rebuilt.first_token_distribution(word_prompt(10, seed=99)).probabilities
            gap = max(abs(again[k] - probs[k]) / max(probs[k], 1e-9) for k in probs)
            line += f"; artifact rebuilds it (decision probabilities within {gap:.1e} relative)"
        print(line, flush=True)
    print(f"train smoke passed; outputs in {out}")


if __name__ == "__main__":
    main()
