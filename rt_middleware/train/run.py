"""One training run end to end: tokens, examples, loop, metrics, outputs (shared by every preset)."""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rt_middleware._extras import require
from rt_middleware.artifact import save_artifact
from rt_middleware.tokens import RefusalTokenSchema
from rt_middleware.train.sft import SFTRecord, build_examples
from rt_middleware.train.tokens import add_decision_tokens
from rt_middleware.train.trainer import TrainConfig, decision_accuracy, train

__all__ = ["run_training", "save_merged"]


def save_merged(model: Any, tokenizer: Any, folder: Path) -> Path:
    """A plain transformers directory (merged LoRA) that `HFBackend.from_pretrained` loads."""
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    merged.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_training(
    model: Any,
    tokenizer: Any,
    schema: RefusalTokenSchema,
    records: Sequence[SFTRecord],
    config: TrainConfig,
    out: Path,
    *,
    max_length: int = 256,
    max_response_tokens: int = 48,
    refusal_text: bool = True,
    eval_records: Sequence[SFTRecord] = (),
    manifest_extra: Mapping[str, Any] | None = None,
    save_model: bool = True,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and write ``out/artifact`` (LoRA: factors + rows + manifest) and ``out/model``.

    ``refusal_text=False`` trains refusal rows on the decision token alone (`build_example`).
    Returns the manifest (data, hyperparameters, time, held-out decision accuracy).
    """
    require("torch", extra="train", feature="rt train")
    from rt_middleware.backends.hf import resolve_hf_tokens

    began = time.monotonic()
    add_decision_tokens(model, tokenizer, schema)
    tokens = resolve_hf_tokens(tokenizer, schema)
    shape = {"max_length": max_length, "max_response_tokens": max_response_tokens, "refusal_text": refusal_text}
    examples, skipped = build_examples(tokenizer, records, tokens, **shape)
    held_out, _ = build_examples(tokenizer, eval_records, tokens, **shape)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    result = train(model, examples, tokens, config, out=out, pad_id=int(pad or 0), resume=resume, progress=progress)
    metrics = {"final_loss": round(sum(result.losses[-10:]) / max(1, len(result.losses[-10:])), 4)}
    if held_out:
        metrics["held_out"] = {k: round(v, 4) for k, v in decision_accuracy(result.model, held_out, tokens).items()}
        metrics["held_out_examples"] = len(held_out)
    manifest = {
        "schema_tokens": list(schema.tokens),
        "examples": len(examples),
        "skipped_too_long": skipped,
        "labels": dict(Counter(e.name for e in examples)),
        "train": config.model_dump(),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.monotonic() - began, 1),
        "loss_curve": [round(x, 4) for x in result.losses],
        "metrics": metrics,
        "machine": f"{platform.machine()} {platform.system()}",
        **shape,
        **(manifest_extra or {}),
    }
    if config.method == "lora":
        save_artifact(result.model, tokenizer, schema, out / "artifact", manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if result.losses:
        from rt_middleware.plots import plot_loss_curve

        plot_loss_curve(result.losses, out / "loss.png", title=f"training loss ({config.method}, {result.steps} steps)")
    if save_model:
        save_merged(result.model, tokenizer, out / "model")
    return manifest
