"""Model backends: one file each behind `BaseBackend`; heavy libraries load on first use.

Loading by name ('default', a .gguf, a model directory) lives one layer up, in
`rt_middleware.loading.load_backend` (also `rt_middleware.load_backend`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill

if TYPE_CHECKING:
    from rt_middleware.backends.hf import HFBackend
    from rt_middleware.backends.llamacpp import LlamaCppBackend
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

__all__ = [
    "BaseBackend",
    "GenerationOptions",
    "HFBackend",
    "LlamaCppBackend",
    "OpenAICompatibleBackend",
    "Prefill",
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
