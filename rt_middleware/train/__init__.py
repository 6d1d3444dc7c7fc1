"""Training: add decision tokens to any causal LM and fine-tune it to start answers with them.

Needs the ``train`` extra (transformers, peft). Heavy libraries are imported inside functions, so
importing this package is cheap. See `rt_middleware.train.sft` for the JSONL schema and
`rt_middleware.train.trainer` for the loop and the 8B GPU recipe.
"""

from __future__ import annotations

from rt_middleware.artifact import ArtifactError, apply_artifact, save_artifact
from rt_middleware.train.run import run_training, save_merged
from rt_middleware.train.sft import SFTExample, SFTRecord, build_example, encode_prompt, load_sft_jsonl
from rt_middleware.train.tokens import add_decision_tokens
from rt_middleware.train.trainer import TrainConfig, TrainResult, decision_accuracy, train

__all__ = [
    "ArtifactError",
    "SFTExample",
    "SFTRecord",
    "TrainConfig",
    "TrainResult",
    "add_decision_tokens",
    "apply_artifact",
    "build_example",
    "decision_accuracy",
    "encode_prompt",
    "load_sft_jsonl",
    "run_training",
    "save_artifact",
    "save_merged",
    "train",
]
