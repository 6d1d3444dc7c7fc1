"""The gateway: an OpenAI-compatible `/v1/chat/completions` that decides first, then refuses or answers.

Responses follow OpenAI's chat schema. A refusal is ``choices[0].message.refusal`` = the policy's
message with ``content`` null (streamed as one ``delta.refusal``); a routed request is answered
with ``content`` and ``refusal`` null, ``finish_reason`` "stop", the header ``X-RT-Route: NAME`` and
the decision, so the client routes it (the gateway has no route runnables). Every response, and the
first and last chunk of a stream, carries ``refusal_decision`` (`Decision.to_dict()`). Nothing is
streamed before the decision.

Errors use OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``: 400 malformed
JSON, wrong types or a prompt over the token limit, 401 unknown or missing key, 403 a key whose
tenant has no policy or a non-admin key on ``/admin``, 404 / 405 unknown paths and methods, 408 a
body that did not arrive within `body_timeout_s`, 413 body too large, 429 over the concurrency limit,
503 the engine failed and the tenant fails open (nothing to answer with), 504 the deadline passed
while answering. A decision that misses the deadline takes the tenant's fail mode. A client that
hangs up stops its answer's generation, streamed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rt_middleware.backends.base import GenerationOptions
from rt_middleware.decision import Decision, fail_decision
from rt_middleware.errors import BackendError, BackendTimeoutError, RequestError, RTError
from rt_middleware.messages import ChatMessage, as_conversation
from rt_middleware.router import Evaluation, RefusalRouter

from .keys import KeyEntry, KeyStore

__all__ = ["ServerSettings", "create_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one gateway process."""

    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int | None = None
    """None: the model's context is the only limit."""
    max_concurrency: int = 64
    """Requests in flight beyond this get 429."""
    deadline_s: float = 60.0
    """Per request: decision plus answer, counted once the body has arrived."""
    body_timeout_s: float = 30.0
    """The request body must arrive within this (else 408); it holds no concurrency slot meanwhile."""
    max_tokens_limit: int = 4096
    """Upper bound on a request's max_tokens."""
    cache_salt_secret: str | None = None
    """With a served vLLM engine: each tenant's requests carry cache_salt = HMAC-SHA256(secret, tenant),
    so tenants never share prefix-cache blocks (same secret on every replica). None: no salt."""
    model_id: str | None = None
    """The id /v1/models lists (default: the backend's model name)."""
    watch_policy: bool = True
    """Reload the policy file when it changes (watchfiles)."""
    worker_threads: int = 32
    """Threads that run decisions and answers (the backends are synchronous); asyncio's default of
    min(32, cores + 4) would leave the gateway less parallel than the same backend called in-process."""


# ---- the request schema (OpenAI's, reduced to what the gateway uses; unknown fields ignored) --------
class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # "stream": "yes" is an error, not True
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream_options: _StreamOptions | None = None


def _conversation(request: ChatRequest) -> list[ChatMessage]:
    out = []
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            kinds = {p.type for p in message.content} - {"text"}
            if kinds:
                raise RequestError(f"messages[{i}]: only text content is supported, got {sorted(kinds)}")
            text = "".join(p.text or "" for p in message.content)
        else:
            text = message.content or ""
        role = {"developer": "system", "tool": "user"}.get(message.role, message.role)
        out.append(ChatMessage(role, f"[tool result] {text}" if message.role == "tool" else text))  # type: ignore[arg-type]
    return as_conversation(out)


def _error(
    status: int, message: str, kind: str, code: str | None = None, *, param: str | None = None, **extra: Any
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}, **extra}
    return JSONResponse(body, status_code=status)


_HTTP_ERROR_TYPES = {404: "not_found_error", 405: "invalid_request_error"}


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "rt_decisions", "Decisions taken", ["tenant", "action", "category"], registry=self.registry
        )
        self.latency = Histogram(
            "rt_decision_latency_seconds", "Time to a decision (one prefill)", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_flight = Gauge("rt_requests_in_flight", "Chat requests being served", registry=self.registry)
        self.rejected = Counter("rt_rejected_requests", "Requests rejected", ["status"], registry=self.registry)


def create_app(router: RefusalRouter, keys: KeyStore, settings: ServerSettings | None = None) -> FastAPI:
    """The gateway app over a router (backend + policy store) and a key store."""
    settings = settings or ServerSettings()
    store = router.policies
    backend = router.backend
    model_id = settings.model_id or backend.model_name
    metrics = _Metrics()
    state = {"in_flight": 0, "ready": False}

    def reload_all(source: str) -> dict[str, Any]:
        entries = keys.read()  # parsed first: a broken keys file leaves the policies untouched too
        version = store.reload() if store.path is not None else store.version
        n_keys = keys.install(entries)
        log.info("reloaded policies (version %s) and %d keys on %s", version, n_keys, source)
        return {"policy_version": version, "tenants": list(store.tenants), "keys": n_keys}

    async def reload_quietly(source: str) -> None:
        try:
            await asyncio.to_thread(reload_all, source)
        except RTError as exc:  # the old policies and keys stay
            log.error("reload on %s failed, keeping the previous policies: %s", source, exc)

    async def watch(stop: asyncio.Event) -> None:
        from watchfiles import awatch

        path = store.path.resolve()  # type: ignore[union-attr]
        async for changes in awatch(path.parent, stop_event=stop, debounce=200, step=50):
            if any(_same(changed, path) for _, changed in changes):
                await reload_quietly("policy file change")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = []
        if settings.watch_policy and store.path is not None:
            tasks.append(asyncio.create_task(watch(stop)))
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="rt-serve"))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_quietly("SIGHUP")))
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            stop.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)

    app = FastAPI(title="rt-middleware gateway", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.settings = settings

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and methods answer in OpenAI's error body too, not FastAPI's {"detail"}."""
        kind = _HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request_error")
        response = _error(exc.status_code, str(exc.detail), kind)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    def authenticate(request: Request) -> KeyEntry | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        entry = keys.lookup(key.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            metrics.rejected.labels("401").inc()
            return _error(401, "Incorrect or missing API key (send Authorization: Bearer KEY).",
                          "invalid_request_error", "invalid_api_key")
        return entry

    # ---- probes and metrics ------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if not state["ready"]:
            return _error(503, "starting or shutting down", "unavailable")
        ping = getattr(backend, "ping", None)
        if ping is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(ping), timeout=5)
            except (RTError, TimeoutError) as exc:
                return _error(503, f"the engine is not reachable: {exc}", "unavailable")
        return JSONResponse({"status": "ready", "policy_version": store.version, "model": model_id})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        entry = authenticate(request)
        if isinstance(entry, JSONResponse):
            return entry
        return JSONResponse({"object": "list", "data": [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "rt-middleware"}
        ]})

    # ---- admin -----------------------------------------------------------------------------------
    def admin(request: Request) -> KeyEntry | JSONResponse:
        entry = authenticate(request)
        if isinstance(entry, KeyEntry) and entry.role != "admin":
            return _error(403, "this key is not an admin key", "permission_error")
        return entry

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> Response:
        entry = admin(request)
        if isinstance(entry, JSONResponse):
            return entry
        try:
            return JSONResponse(await asyncio.to_thread(reload_all, "/admin/reload"))
        except RTError as exc:
            return _error(400, f"reload failed, the previous policies stay: {exc}", "invalid_request_error")

    @app.get("/admin/policies/{tenant}")
    async def admin_policy(tenant: str, request: Request) -> Response:
        entry = admin(request)
        if isinstance(entry, JSONResponse):
            return entry
        if tenant not in store.tenants:
            return _error(404, f"no tenant {tenant!r}", "not_found_error")
        return JSONResponse({"tenant": tenant, "policy_version": store.version,
                             "policy": store.get(tenant).model_dump(mode="json")})

    # ---- chat --------------------------------------------------------------------------------------
    async def read_request(request: Request) -> ChatRequest | JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return _error(413, f"request body over {settings.max_body_bytes} bytes", "invalid_request_error")
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > settings.max_body_bytes:
                return _error(413, f"request body over {settings.max_body_bytes} bytes", "invalid_request_error")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not valid JSON: {exc}", "invalid_request_error")
        except RecursionError:
            return _error(400, "the body is not valid JSON: nested too deeply", "invalid_request_error")
        try:
            return ChatRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"{where}: {first['msg']}", "invalid_request_error", param=where)

    def options_for(chat: ChatRequest, evaluation: Evaluation) -> GenerationOptions:
        base = router.generation
        asked = chat.max_completion_tokens or chat.max_tokens or base.max_new_tokens
        stop = (chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ())
        return replace(
            base,
            max_new_tokens=min(asked, settings.max_tokens_limit, evaluation.policy.max_new_tokens or asked),
            temperature=base.temperature if chat.temperature is None else chat.temperature,
            top_p=base.top_p if chat.top_p is None else chat.top_p,
            stop=stop or base.stop,
            seed=chat.seed if chat.seed is not None else base.seed,
        )

    def evaluate(conversation: list[ChatMessage], tenant: str) -> tuple[Evaluation, int]:
        """The evaluation and the prompt's length in tokens (for usage)."""
        n = len(backend.encode(conversation)) if settings.max_prompt_tokens is not None else None
        if n is not None and n > settings.max_prompt_tokens:  # type: ignore[operator]
            raise RequestError(
                f"the prompt is {n} tokens; this gateway accepts at most {settings.max_prompt_tokens}",
                tenant_id=tenant,
            )
        messages = [{"role": m.role, "content": m.content} for m in conversation]
        evaluation = router.evaluate(messages, tenant_id=tenant)
        if evaluation.decision.action == "respond":
            # under decide_on: last_turn the answer's prefill happens on first access: here, in this
            # worker thread and within the deadline, never in the event loop (it may change the decision
            # to the fail mode, so the handler reads the decision afterwards)
            prefill = evaluation.prefill
            if prefill is not None:  # the answer's prompt, as the model reads it
                return evaluation, len(prefill.input_ids)
        return evaluation, n if n is not None else len(backend.encode(conversation))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        entry = authenticate(request)
        if isinstance(entry, JSONResponse):
            return entry
        if entry.tenant not in store.tenants:  # never fall back to another tenant's policy
            return _no_policy(entry.tenant)
        try:  # before taking a slot: a slow upload must not hold one (or lock other tenants out)
            chat = await asyncio.wait_for(read_request(request), timeout=settings.body_timeout_s)
        except TimeoutError:
            return _error(408, f"the request body did not arrive within {settings.body_timeout_s} s",
                          "invalid_request_error", "request_timeout")
        if isinstance(chat, JSONResponse):
            return chat
        if state["in_flight"] >= settings.max_concurrency:
            metrics.rejected.labels("429").inc()
            return _error(429, f"more than {settings.max_concurrency} requests in flight; retry later",
                          "rate_limit_error", "concurrency_limit")
        started = time.monotonic()
        state["in_flight"] += 1
        metrics.in_flight.inc()
        if settings.cache_salt_secret:  # this task's context: the decision and the stream inherit it
            from rt_middleware.backends.openai_compat import use_cache_salt

            key = settings.cache_salt_secret.encode()
            use_cache_salt(hmac.new(key, entry.tenant.encode(), hashlib.sha256).hexdigest())
        handed_off = False
        try:
            try:
                conversation = _conversation(chat)
                evaluation, prompt_tokens = await asyncio.wait_for(
                    asyncio.to_thread(evaluate, conversation, entry.tenant), timeout=settings.deadline_s
                )
            except RequestError as exc:
                return _error(400, str(exc), "invalid_request_error")
            except TimeoutError:
                if entry.tenant not in store.tenants:  # removed by a reload meanwhile
                    return _no_policy(entry.tenant)
                tenant, policy, version = store.resolve(entry.tenant)
                error = BackendTimeoutError(f"no decision within the {settings.deadline_s} s deadline")
                decision = fail_decision(policy, tenant=tenant, policy_version=version, error=error)
                evaluation, prompt_tokens = Evaluation(decision=decision, policy=policy, prefill=None), 0
            decision = evaluation.decision
            if decision.tenant != entry.tenant:  # the tenant was removed by a reload mid-request
                return _no_policy(entry.tenant)
            metrics.latency.observe(time.monotonic() - started)
            metrics.decisions.labels(decision.tenant, decision.action, decision.category or "").inc()
            reply = _Reply(model_id, decision, prompt_tokens,
                           include_usage=bool(chat.stream_options and chat.stream_options.include_usage))
            if decision.action == "respond" and evaluation.prefill is None:
                status, what = (504, "deadline") if decision.extras.get("error") == "BackendTimeoutError" else (503, "engine")
                return _error(status, f"the model backend failed ({what}) and this tenant fails open, but "
                              "the gateway has nothing else to answer with", "server_error",
                              refusal_decision=decision.to_dict())
            headers = {"X-RT-Route": decision.route} if decision.action == "route" and decision.route else {}
            if decision.action != "respond":
                if chat.stream:
                    handed_off = True
                    return _sse(reply.final_stream(), headers, lambda: _done(state, metrics))
                return JSONResponse(reply.final(), headers=headers)
            remaining = max(settings.deadline_s - (time.monotonic() - started), 0.001)
            options = replace(options_for(chat, evaluation), timeout=remaining)  # the backend enforces it
            if chat.stream:
                handed_off = True
                chunks = backend.astream(evaluation.prefill, "respond", options)
                return _sse(reply.text_stream(chunks, started + settings.deadline_s, backend, options), headers,
                            lambda: _done(state, metrics))
            answer = asyncio.ensure_future(backend.acomplete(evaluation.prefill, "respond", options))
            try:
                if not await _finished_unless_hung_up(answer, request, remaining + 1.0):
                    return Response(status_code=499)  # nobody is listening; the generation has stopped
                generation = answer.result()
            except (TimeoutError, BackendTimeoutError):
                return _error(504, f"no answer within the {settings.deadline_s} s deadline", "server_error",
                              refusal_decision=decision.to_dict())
            except BackendError as exc:
                return _error(503, f"the model backend failed while answering: {exc}", "server_error",
                              refusal_decision=decision.to_dict())
            generated = await asyncio.to_thread(
                backend.answer_tokens, generation.text, generation.finish_reason, options.max_new_tokens
            )
            return JSONResponse(reply.final(generation.text, _finish(generation.finish_reason), generated))
        finally:
            if not handed_off:
                _done(state, metrics)

    return app


def _no_policy(tenant: str) -> JSONResponse:
    return _error(403, f"tenant {tenant!r} has no policy on this gateway", "permission_error")


_DISCONNECT_POLL_S = 0.25


async def _finished_unless_hung_up(task: asyncio.Future[Any], request: Request, timeout: float) -> bool:
    """Wait for `task`; cancel it when the client disconnects (False) or `timeout` passes (TimeoutError).

    A non-streamed answer has nothing to send until it ends, so only polling notices a client that
    left; cancelling the answer's task closes its stream, which ends the backend's generation.
    """
    end = time.monotonic() + timeout
    try:
        while not task.done():
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            await asyncio.wait({task}, timeout=min(_DISCONNECT_POLL_S, left))
            if not task.done() and await request.is_disconnected():
                return False
        return True
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _finish(reason: str | None) -> str:
    """A backend's finish reason in OpenAI's terms (OpenAI has no "context": the answer was cut)."""
    return "length" if reason in ("length", "context") else "stop"


def _same(changed: str, path: Any) -> bool:
    from pathlib import Path

    try:
        return Path(changed).resolve() == path
    except OSError:
        return False


def _done(state: dict[str, Any], metrics: _Metrics) -> None:
    state["in_flight"] -= 1
    metrics.in_flight.dec()


def _sse(events: AsyncIterator[dict[str, Any]], headers: Mapping[str, str], done: Any) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            done()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", **headers})


class _Reply:
    """OpenAI chat objects for one request."""

    def __init__(self, model: str, decision: Decision, prompt_tokens: int, *, include_usage: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
        """A stream ends with OpenAI's usage chunk (`stream_options.include_usage`)."""
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.decision = decision.to_dict()
        self.refusal = decision.message if decision.action == "refuse" else None

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        """OpenAI's usage: the prompt as the model read it, the answer's generated tokens (0 for a
        refusal or a route: nothing was generated)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens + completion_tokens}

    def final(self, text: str | None = None, finish: str = "stop", completion_tokens: int = 0) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": self.refusal}
        return {
            **self._head("chat.completion"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": self.usage(completion_tokens),
            "refusal_decision": self.decision,
        }

    def _usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": self.usage(completion_tokens)}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, decision: bool = False) -> dict[str, Any]:
        chunk = {
            **self._head("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if decision:
            chunk["refusal_decision"] = self.decision
        return chunk

    async def final_stream(self) -> AsyncIterator[dict[str, Any]]:
        delta: dict[str, Any] = {"role": "assistant", "content": None}
        if self.refusal is not None:
            delta["refusal"] = self.refusal
        yield self._chunk(delta, decision=True)
        yield self._chunk({}, "stop", decision=True)
        if self.include_usage:
            yield self._usage_chunk(0)

    async def text_stream(
        self, chunks: Any, deadline: float, backend: Any, options: GenerationOptions
    ) -> AsyncIterator[dict[str, Any]]:
        """`chunks` is the backend's AsyncTextStream; its finish_reason is read once it ends."""
        yield self._chunk({"role": "assistant", "content": ""}, decision=True)
        finish: str | None = None
        sent: list[str] = []
        try:
            async for text in chunks:
                sent.append(text)
                yield self._chunk({"content": text})
                if time.monotonic() > deadline:
                    finish = "length"  # the deadline cut the answer
                    break
        except BackendError as exc:  # BackendTimeoutError: the deadline passed inside the backend
            log.warning("the backend failed mid-stream: %s", exc)
            finish = "length"
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()
        reason = getattr(chunks, "finish_reason", None)
        yield self._chunk({}, finish or _finish(reason), decision=True)
        if self.include_usage:  # an answer cut here (deadline, error) is counted from the text sent
            generated = await asyncio.to_thread(
                backend.answer_tokens, "".join(sent), reason if finish is None else None, options.max_new_tokens
            )
            yield self._usage_chunk(generated)
