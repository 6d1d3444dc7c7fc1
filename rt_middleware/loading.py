"""Loading a backend by name: the layer above the backends and the shipped default model.

`rt_middleware.backends` holds one class per library and knows nothing of names like 'default';
this module maps a spec (what `--model` takes) to a constructed backend. It is also
`rt_middleware.load_backend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rt_middleware.backends.base import BaseBackend
from rt_middleware.errors import ConfigError
from rt_middleware.tokens import RefusalTokenSchema

__all__ = ["DEFAULT_SPECS", "load_backend"]

DEFAULT_SPECS = ("default", "default:hf", "default:llamacpp")
"""The shipped model (`rt_middleware.default_model`), behind transformers or llama.cpp."""


def load_backend(
    spec: str | Path, schema: RefusalTokenSchema | None = None, **backend_options: Any
) -> BaseBackend:
    """A backend for `spec`: 'default' / 'default:hf' / 'default:llamacpp', a .gguf file, a
    transformers model directory, or 'openai:http://HOST:PORT/v1' (a served engine).

    `backend_options` are passed unchanged to the backend that `spec` selects:
    `HFBackend.from_pretrained` (e.g. ``device=``, ``dtype=``, ``device_map=``,
    ``attn_implementation=``), `LlamaCppBackend` (e.g. ``n_gpu_layers=``, ``n_ctx=``,
    ``pool_size=``) or `OpenAICompatibleBackend` (``tokenizer=``: the served model's GGUF or
    directory; default, or ``"default"``: the shipped default model's GGUF). `schema` applies to a
    file, a directory or a server; the default model brings its own.
    """
    text = str(spec)
    if text.startswith("openai:"):  # openai:http://HOST:PORT/v1, a served engine
        from rt_middleware.backends.openai_compat import OpenAICompatibleBackend

        options = dict(backend_options)
        if options.get("tokenizer") in (None, "default"):  # the served model is the default model
            from rt_middleware.default_model import materialize_default_model

            options["tokenizer"] = materialize_default_model("llamacpp", progress=False)
        return OpenAICompatibleBackend(text.removeprefix("openai:"), schema=schema, **options)
    if text in DEFAULT_SPECS:
        from rt_middleware.default_model import load_default_backend

        return load_default_backend("llamacpp" if text.endswith("llamacpp") else "hf", **backend_options)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ConfigError(f"GGUF file not found: {path}")
        from rt_middleware.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(path, schema=schema, **backend_options)
    if path.is_dir():
        from rt_middleware.backends.hf import HFBackend

        return HFBackend.from_pretrained(path, schema=schema, **backend_options)
    raise ConfigError(
        f"--model {text!r} is neither 'default', a .gguf file nor a model directory (specs: 'default', "
        "'default:hf', 'default:llamacpp', FILE.gguf, a transformers model DIR, 'openai:http://HOST:PORT/v1')"
    )
