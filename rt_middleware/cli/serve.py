"""`rt serve`: the OpenAI-compatible, multi-tenant gateway (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import err_console, user_errors


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="'default', an HF dir, a .gguf, or openai:http://HOST:PORT/v1.")] = "default",
    policy: Annotated[Path | None, typer.Option(help="Policy file (YAML/JSON); reloaded on change and SIGHUP.")] = None,
    keys: Annotated[Path, typer.Option("--keys", help="Keys file from `rt keys add`.")] = Path("keys.json"),
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    tokenizer: Annotated[str, typer.Option(help="openai: specs: the served model's GGUF or HF dir.")] = "default",
    max_context: Annotated[int | None, typer.Option(
        min=1, help="openai: specs: the engine's context in tokens when below the model's trained one "
        "(llama-cpp-python's --n_ctx; vLLM reports its max_model_len itself).")] = None,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight beyond this get 429.")] = 64,
    deadline: Annotated[float, typer.Option(min=0.1, help="Seconds per request (decision + answer).")] = 60.0,
    body_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds for a request body to arrive (408 after); a slow upload holds no slot.")] = 30.0,
    max_body_bytes: Annotated[int, typer.Option(min=1024)] = 1_000_000,
    max_prompt_tokens: Annotated[int | None, typer.Option(min=1, help="Default: the model's context.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length when a request sets none.")] = 256,
    pool_size: Annotated[int, typer.Option(min=1, help="llama.cpp instances (.gguf / default:llamacpp).")] = 1,
    watch: Annotated[bool, typer.Option(help="Reload the policy file when it changes.")] = True,
    worker_threads: Annotated[int, typer.Option(min=1, help="Threads running decisions and answers.")] = 32,
    cache_salt_secret: Annotated[str | None, typer.Option(
        envvar="RT_CACHE_SALT_SECRET", help="openai: specs on vLLM: per-tenant prefix-cache salts from this secret.",
    )] = None,
    coalesce_ms: Annotated[float | None, typer.Option(
        min=0.0, help="transformers models: gather concurrent requests' prefills into batched forwards, each "
        "waiting up to this many ms for others (off by default; worth it on a GPU).",
    )] = None,
    coalesce_max_batch: Annotated[int, typer.Option(min=1, help="Largest gathered batch (--coalesce-ms).")] = 16,
) -> None:
    """Serve POST /v1/chat/completions (OpenAI schema, SSE), /v1/models, /healthz, /readyz, /metrics."""
    import uvicorn

    from rt_middleware.backends import GenerationOptions
    from rt_middleware.integrations.server import KeyStore, ServerSettings, create_app
    from rt_middleware.policy import PolicyStore
    from rt_middleware.router import RefusalRouter

    with user_errors():
        store = PolicyStore.from_file(policy) if policy else PolicyStore.default()
        key_store = KeyStore.from_file(keys)
        backend = _load(model, tokenizer, pool_size, max_context)
        if coalesce_ms is not None:  # a backend that prefills one prompt at a time refuses (ConfigError)
            backend.coalesce_requests(window_ms=coalesce_ms, max_batch_size=coalesce_max_batch)
        router = RefusalRouter(
            backend=backend, policies=store, check_routes=False,
            generation=GenerationOptions(max_new_tokens=max_new_tokens),
        )
        settings = ServerSettings(
            max_body_bytes=max_body_bytes, max_prompt_tokens=max_prompt_tokens,
            max_concurrency=max_concurrency, deadline_s=deadline, body_timeout_s=body_timeout, watch_policy=watch,
            worker_threads=worker_threads, cache_salt_secret=cache_salt_secret,
        )
        application = create_app(router, key_store, settings)
    if len(key_store) == 0:
        err_console.print(f"warning: {keys} holds no keys; every request gets 401 (add one with `rt keys add`)")
    # uvicorn drains in-flight requests on SIGINT/SIGTERM before exiting
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


def _load(model: str, tokenizer: str, pool_size: int, max_context: int | None):
    from rt_middleware.errors import ConfigError
    from rt_middleware.loading import load_backend

    if model.startswith("openai:"):
        return load_backend(model, tokenizer=tokenizer, max_context=max_context)
    if max_context is not None:
        raise ConfigError("--max-context is for openai: models; a local model's context is its own")
    if pool_size > 1 and (model.endswith(".gguf") or model == "default:llamacpp"):
        from rt_middleware.backends.llamacpp import LlamaCppBackend
        from rt_middleware.default_model import materialize_default_model

        path = materialize_default_model("llamacpp") if model == "default:llamacpp" else Path(model)
        return LlamaCppBackend(path, pool_size=pool_size)
    return load_backend(model)
