"""Command-line options shared by several commands, and loading the model they name.

`rt --help` imports every command module, so only light modules at import: the isolation
default comes from `rt_middleware.evaluation.sweep` (numpy and policies, loaded anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rt_middleware.evaluation.sweep import ISOLATION_COVERAGE

if TYPE_CHECKING:
    from rt_middleware.backends.base import BaseBackend

__all__ = [
    "ISOLATION_COVERAGE",
    "BatchOption",
    "CacheOption",
    "DeviceOption",
    "DtypeOption",
    "HoldoutOption",
    "IsolationOption",
    "ModelOption",
    "NoCacheOption",
    "PolicyOption",
    "SeedOption",
    "load_model",
    "runs_on_llamacpp",
]

ModelOption = Annotated[str, typer.Option("--model", help="HF model dir, a .gguf file, or 'default'.")]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="Torch device of a transformers model, e.g. cuda or cuda:1 (default: cpu)."
    ),
]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        "--dtype", help="Torch dtype of a transformers model, e.g. bfloat16 (default: float32)."
    ),
]
PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Policy file (YAML or JSON); default: the shipped one.")
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache", help="Distribution cache (JSONL); default: $RT_CACHE_DIR or ~/.cache/rt-middleware."
    ),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
HoldoutOption = Annotated[
    float,
    typer.Option("--holdout-fraction", help="Share of a FILE's rows per label held out (seeded split)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of a FILE's calibration/held-out split.")]
IsolationOption = Annotated[
    float,
    typer.Option(
        "--isolation-coverage",
        min=0.01,
        max=1.0,
        help="Isolation sweep: each category's threshold runs from where it alone refuses this share "
        "of its own prompts up to 1.0.",
    ),
]


def runs_on_llamacpp(spec: str) -> bool:
    """Whether `load_backend(spec)` gives a llama.cpp backend."""
    return spec == "default:llamacpp" or spec.lower().endswith(".gguf")


def load_model(spec: str, *, device: str | None = None, dtype: str | None = None) -> BaseBackend:
    """`rt_middleware.load_backend(spec)` with --device/--dtype passed on where given.

    They configure transformers models; for a GGUF (llama.cpp) they are an error, not ignored.
    """
    from rt_middleware.errors import ConfigError
    from rt_middleware.loading import load_backend

    options = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    if options and runs_on_llamacpp(spec):
        raise ConfigError(
            f"--device/--dtype configure transformers models; {spec!r} runs on llama.cpp"
        )
    return load_backend(spec, **options)
