"""Model backends: one file each behind `BaseBackend`; heavy libraries load on first use."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill
from rt_middleware.errors import ConfigError
from rt_middleware.tokens import RefusalTokenSchema

if TYPE_CHECKING:
    from rt_middleware.backends.hf import HFBackend
    from rt_middleware.backends.llamacpp import LlamaCppBackend
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

__all__ = [
    "BaseBackend", "GenerationOptions", "HFBackend", "LlamaCppBackend", "OpenAICompatibleBackend", "Prefill",
    "load_backend",
]

_LAZY = {
    "HFBackend": "rt_middleware.backends.hf",
    "LlamaCppBackend": "rt_middleware.backends.llamacpp",
    "OpenAICompatibleBackend": "rt_middleware.backends.openai_compat",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_middleware.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load_backend(spec: str | Path, schema: RefusalTokenSchema | None = None) -> BaseBackend:
    """'default' (the shipped model), 'default:llamacpp', a .gguf file, a transformers model dir, or
    'openai:http://HOST:PORT/v1' (a served engine; OpenAICompatibleBackend with the default tokenizer)."""
    text = str(spec)
    if text.startswith("openai:"):  # openai:http://HOST:PORT/v1, a served engine
        from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(text.removeprefix("openai:"), schema=schema)
    if text in ("default", "default:hf", "default:llamacpp"):
        from rt_middleware.default_model import load_default_backend

        return load_default_backend("llamacpp" if text.endswith("llamacpp") else "hf")
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ConfigError(f"GGUF file not found: {path}")
        from rt_middleware.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(path, schema=schema)
    if path.is_dir():
        from rt_middleware.backends.hf import HFBackend

        return HFBackend.from_pretrained(path, schema=schema)
    raise ConfigError(f"--model {text!r} is neither 'default', a .gguf file nor a model directory")
