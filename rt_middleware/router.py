"""RefusalRouter: the LangChain runnable that decides from one prefill, then refuses, routes or answers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForChainRun
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable, ensure_config
from langchain_core.runnables.config import get_executor_for_config, patch_config
from pydantic import ConfigDict, Field

from rt_middleware.audit import as_audit
from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill, ThreadedAsyncIterator
from rt_middleware.decision import Decision, decide, fail_decision
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import BackendError, ConfigError, InvalidInputError, RequestError, RTError
from rt_middleware.messages import ChatMessage, as_conversation, check_text, messages_to_decide_on
from rt_middleware.policy import PolicyStore, TenantPolicy

__all__ = ["Evaluation", "RefusalRouter", "refusal_message", "to_conversation"]

logger = logging.getLogger(__name__)
_ACCEPTED = (
    "a str prompt, a list of messages (BaseMessage, {'role': ..., 'content': ...} dicts, "
    "(role, text) tuples or ChatMessage) or a PromptValue"
)


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."

RouterInput = str | Sequence[BaseMessage | Mapping[str, Any] | tuple[str, str]] | PromptValue
_TEXT_BLOCKS = frozenset({"text", "refusal", "reasoning"})


def _message_text(message: BaseMessage, index: int) -> str:
    if isinstance(message.content, str):
        return check_text(message.content, f"message {index}")
    for block in message.content:
        kind = block.get("type") if isinstance(block, dict) else "text"
        if kind not in _TEXT_BLOCKS and kind not in ("tool_use", "tool_call"):
            raise InvalidInputError(
                f"message {index} has {str(kind)[:40]!r} content; this model reads text only"
            )
    text = message.text
    if not isinstance(text, str):
        raise InvalidInputError(f"message {index} has no readable text")
    return check_text(text, f"message {index}")


def to_conversation(value: RouterInput) -> list[ChatMessage]:
    """LangChain input (str, messages, PromptValue) -> framework-free conversation.

    Raises InvalidInputError for anything else (a dict, bytes, a number), for empty input and for
    text that no tokenizer can encode (lone surrogates). Tool results become user text marked
    ``from_tool`` (so ``decide_on: last_turn`` does not take them for the user's turn).
    """
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, str):
        return [ChatMessage("user", check_text(value))]
    if isinstance(value, Mapping | bytes | bytearray) or not isinstance(value, Sequence):
        raise InvalidInputError(f"cannot read a {type(value).__name__} as input: give {_ACCEPTED}")
    if not value:
        raise InvalidInputError("the conversation is empty: give a prompt or at least one message")
    if all(isinstance(m, ChatMessage) for m in value):  # already framework-free
        return [ChatMessage(m.role, check_text(m.content, f"message {i}"), m.from_tool) for i, m in enumerate(value)]
    try:
        messages = convert_to_messages(value)
    except RTError:
        raise
    except Exception as exc:  # langchain raises ValueError, TypeError, KeyError, ... for odd shapes
        raise InvalidInputError(
            f"cannot read the input as chat messages ({type(exc).__name__}); give {_ACCEPTED}"
        ) from None
    out: list[ChatMessage] = []
    for i, msg in enumerate(messages):
        text = _message_text(msg, i)
        if isinstance(msg, SystemMessage):
            out.append(ChatMessage("system", text))
        elif isinstance(msg, AIMessage):
            out.append(ChatMessage("assistant", text))
        elif isinstance(msg, ToolMessage):
            out.append(ChatMessage("user", f"[tool result] {text}", from_tool=True))
        else:
            out.append(ChatMessage("user", text))
    return out


def _decision_run(
    config: RunnableConfig | None, conversation: list[ChatMessage] | None, *, tenant: str, policy_version: str
) -> CallbackManagerForChainRun | None:
    """Start a ``refusal_decision`` run on the config's (or the surrounding run's) callbacks."""
    config = ensure_config(config)
    manager = CallbackManager.configure(
        inheritable_callbacks=config.get("callbacks"),
        inheritable_tags=config.get("tags"),
        inheritable_metadata=config.get("metadata"),
        local_metadata={"tenant": tenant, "policy_version": policy_version},
    )
    if not manager.handlers:
        return None
    inputs: dict[str, Any] = {"tenant": tenant}
    if conversation is not None:
        inputs["messages"] = [{"role": m.role, "content": m.content} for m in conversation]
    return manager.on_chain_start(None, inputs, name="refusal_decision")


class _ModelChunks(Iterator[str]):
    """The model's answer text; a fault before the first chunk surfaces at the first `next`, one
    after it becomes a BackendError (text went out, so no fail mode applies); `finish_reason`."""

    def __init__(self, router: RefusalRouter, evaluation: Evaluation) -> None:
        self._router, self._evaluation = router, evaluation
        self._stream: Any = None

    @property
    def finish_reason(self) -> str | None:
        return getattr(self._stream, "finish_reason", None)

    def __next__(self) -> str:
        if self._stream is None:
            prefill = self._router._answer_prefill(self._evaluation)
            self._stream = self._router.backend.stream(prefill, "respond", self._router._options(self._evaluation.policy))
            return next(self._stream)
        try:
            return next(self._stream)
        except (StopIteration, RTError):
            raise
        except Exception as exc:
            raise BackendError(f"the backend failed while streaming: {_error_text(exc)}") from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _Prepended(Iterator[str]):
    def __init__(self, head: str | None, rest: _ModelChunks) -> None:
        self._head, self._rest = head, rest

    @property
    def finish_reason(self) -> str | None:
        return self._rest.finish_reason

    def __next__(self) -> str:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return next(self._rest)

    def close(self) -> None:
        self._rest.close()


def refusal_message(decision: Decision, **metadata: Any) -> AIMessage:
    """A refusal as LangChain v1 providers shape it: a text block plus a standard refusal block."""
    text = decision.message or ""
    return AIMessage(
        content=[
            {"type": "text", "text": text},
            {"type": "refusal", "refusal": text, "extras": _refusal_extras(decision)},
        ],
        response_metadata={"refusal_decision": decision.to_dict(), **metadata},
    )


def _refusal_extras(decision: Decision) -> dict[str, Any]:
    return {
        "category": decision.category,
        "probabilities": dict(decision.probabilities),
        "tenant": decision.tenant,
        "policy_version": decision.policy_version,
        "threshold": decision.threshold,
    }


def _refusal_chunk(decision: Decision, **metadata: Any) -> AIMessageChunk:
    text = decision.message or ""
    return AIMessageChunk(
        content=[
            {"type": "text", "text": text, "index": 0},
            {"type": "refusal", "refusal": text, "extras": _refusal_extras(decision), "index": 1},
        ],
        response_metadata={"refusal_decision": decision.to_dict(), **metadata},
    )


def _as_chunk(piece: Any) -> BaseMessageChunk:
    """A streamed piece of a delegate's answer as a chunk; a whole message keeps its tool calls,
    metadata and id, so `stream` gives what `invoke` gives."""
    if isinstance(piece, BaseMessageChunk):
        return piece
    if isinstance(piece, AIMessage):
        return AIMessageChunk(**piece.model_dump(exclude={"type"}))
    if isinstance(piece, BaseMessage):
        return AIMessageChunk(content=piece.content, response_metadata=piece.response_metadata, id=piece.id)
    return AIMessageChunk(content=str(piece))


@dataclasses.dataclass
class _Request:
    """One request on its way to a decision: who asks, under which policy, what is read."""

    conversation: list[ChatMessage]
    decided: list[ChatMessage]
    tenant: str
    requested: str | None
    policy: TenantPolicy
    version: str
    run: CallbackManagerForChainRun | None
    started: float

    @property
    def one_prefill(self) -> bool:
        """The decided text is what an answer continues from: the decision's prefill serves both."""
        return self.decided == self.conversation


class Evaluation:
    """A decision plus what is needed to act on it (without a second prefill where possible).

    `prefill` is what a respond answer continues from: the decision's own prefill when the decided
    text is the whole conversation (one prefill in all). With history under ``decide_on: last_turn``
    the decision read less than the answer needs; the whole conversation is then prefilled on first
    access of `prefill` (its distribution is not the decision's), so consumers that never answer
    with this backend (guard mode) never pay for it. If that prefill fails, `prefill` is None and
    `decision` becomes the tenant's fail-mode decision.
    """

    def __init__(
        self,
        decision: Decision,
        policy: TenantPolicy,
        prefill: Prefill | None = None,
        conversation: list[ChatMessage] | None = None,
        decided_on: list[ChatMessage] | None = None,
        *,
        on_demand: Callable[[Evaluation], Prefill | None] | None = None,
    ) -> None:
        self.decision = decision
        self.policy = policy
        self._prefill = prefill
        self.conversation = conversation
        """The whole conversation the answer is generated from."""
        self.decided_on = decided_on
        """What the decision read (per the tenant's ``decide_on``)."""
        self._on_demand = on_demand
        self._lock = threading.RLock()  # the on-demand prefill sets `prefill` while holding it

    @property
    def prefill(self) -> Prefill | None:
        if self._prefill is None and self._on_demand is not None:
            with self._lock:
                if self._on_demand is not None:
                    make, self._on_demand = self._on_demand, None
                    self._prefill = make(self)
        return self._prefill

    @prefill.setter
    def prefill(self, value: Prefill | None) -> None:
        with self._lock:
            self._prefill, self._on_demand = value, None

    @property
    def needs_answer_prefill(self) -> bool:
        """True while answering still costs a second prefill (history under ``decide_on: last_turn``)."""
        return (
            self._prefill is None
            and self.decision.reason != "backend_error"
            and self.conversation is not None
            and self.decided_on != self.conversation
        )

    def __repr__(self) -> str:
        return f"Evaluation(decision={self.decision!r}, prefill={self._prefill!r})"


class RefusalRouter(RunnableSerializable[RouterInput, BaseMessage]):
    """Decide from the first-token distribution, then refuse, route or continue generating.

    Tenant: ``config["configurable"]["tenant_id"]`` (no id: the store's default tenant). Every output
    carries ``response_metadata["refusal_decision"]``. Decisions are logged at DEBUG on
    ``rt_middleware.router`` and, with `audit`, recorded (prompt as SHA-256 only, by default).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any
    """A `BaseBackend` (HFBackend, LlamaCppBackend, ...)."""
    policies: PolicyStore
    routes: dict[str, Runnable] = Field(default_factory=dict)
    """Route name -> runnable that answers inputs whose decision is `route`."""
    check_routes: bool = True
    """Every route a policy names must be in `routes`, now and on reload. False where route
    decisions are only handed back (the `rt serve` gateway returns them to its client): policies
    may then name any route, and invoking one this router lacks raises ConfigError."""
    respond_with: Runnable | None = None
    """Answers responded inputs instead of continuing the model's own generation."""
    generation: GenerationOptions = Field(default_factory=GenerationOptions)
    """The caller's generation options; a tenant's `max_new_tokens` caps their length."""
    audit: Any = None
    """Decision audit sink: a JSONL file path, a callable taking one record dict, or a
    `DecisionAudit` (e.g. ``DecisionAudit(path, include_text=True)``); None records nothing."""
    max_batch_size: int = Field(default=32, ge=1)
    """`batch`/`abatch` decide and answer at most this many inputs at a time (one padded prefill
    each), so at most this many KV caches are held at once; larger batches run in chunks."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # after pydantic: a PolicyError raised in a validator would be re-wrapped as ValidationError
        if not isinstance(self.backend, BaseBackend):
            raise TypeError(f"backend must be a BaseBackend, got {type(self.backend).__name__}")
        self.policies.require(categories=self.backend.schema.category_names,
                              routes=self.routes if self.check_routes else None)
        self.audit = as_audit(self.audit)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    # ---- deciding ------------------------------------------------------------------------------
    def _tenant(self, config: RunnableConfig | None, tenant_id: str | None) -> str | None:
        if tenant_id is not None:
            return tenant_id
        return ensure_config(config).get("configurable", {}).get("tenant_id")

    def decide(
        self, input: RouterInput, *, tenant_id: str | None = None, config: RunnableConfig | None = None
    ) -> Decision:
        """The decision alone (one prefill, nothing generated); traced as a ``refusal_decision`` run."""
        return self.evaluate(input, tenant_id=tenant_id, config=config, keep_cache=False).decision

    async def adecide(
        self, input: RouterInput, *, tenant_id: str | None = None, config: RunnableConfig | None = None
    ) -> Decision:
        return await asyncio.to_thread(self.decide, input, tenant_id=tenant_id, config=config)

    def evaluate(
        self,
        input: RouterInput,
        *,
        tenant_id: str | None = None,
        config: RunnableConfig | None = None,
        keep_cache: bool = True,
        trace_payload: bool = True,
    ) -> Evaluation:
        """Decide on the part of the input the tenant's ``decide_on`` names.

        With `keep_cache`, `Evaluation.prefill` is what a respond answer continues from: the
        decision's own prefill when it read the whole conversation (one prefill in all), else a
        second prefill of the whole conversation, made on first access (history under last_turn).
        Request errors (unknown tenant, bad input, prompt too long) raise; any other failure of
        the backend applies the tenant's ``fail_mode`` and is logged at WARNING.

        Traced (where `config` or the surrounding run has callbacks) as a run named
        ``refusal_decision``: outputs ``Decision.to_dict()``, metadata ``tenant`` and
        ``policy_version``; its inputs hold the decided messages unless ``trace_payload=False``.
        """
        request = self._request(input, tenant_id, config, trace_payload, time.perf_counter())
        try:
            evaluation = self._conclude(request, self._read(request, keep_cache), keep_cache)
        except BaseException as exc:
            if request.run is not None:
                request.run.on_chain_error(exc)
            raise
        if request.run is not None:
            request.run.on_chain_end(evaluation.decision.to_dict())
        return evaluation

    def _request(
        self, input: RouterInput, tenant_id: str | None, config: RunnableConfig | None, trace_payload: bool,
        started: float,
    ) -> _Request:
        """Resolve the tenant and what the decision reads, and start its ``refusal_decision`` run."""
        requested = self._tenant(config, tenant_id)
        tenant, policy, version = self.policies.resolve(requested)
        conversation = to_conversation(input)
        decided = as_conversation(messages_to_decide_on(conversation, policy.decide_on))
        run = _decision_run(config, decided if trace_payload else None, tenant=tenant, policy_version=version)
        return _Request(conversation, decided, tenant, requested, policy, version, run, started)

    def _read(self, request: _Request, keep_cache: bool) -> Prefill | FirstTokenDistribution | Exception:
        """One request's backend call; a backend fault is returned (the fail mode decides on it)."""
        sampling = {"temperature": request.policy.temperature, "logit_bias": request.policy.logit_bias}
        try:
            if keep_cache and request.one_prefill:
                return self.backend.prefill(request.decided, **sampling)
            return self.backend.first_token_distribution(request.decided, **sampling)
        except RequestError:
            raise
        except Exception as exc:
            return exc

    def _conclude(
        self, request: _Request, read: Prefill | FirstTokenDistribution | Exception, keep_cache: bool
    ) -> Evaluation:
        """The decision from a backend call's result (request errors raise), logged and audited."""
        if isinstance(read, RequestError):
            raise read
        policy, tenant, version = request.policy, request.tenant, request.version
        if isinstance(read, Exception):  # any backend fault, typed or not: the tenant's fail mode decides
            decision = self._failed(policy, tenant, version, read)
        else:
            distribution = read.distribution if isinstance(read, Prefill) else read
            decision = decide(distribution, policy, tenant=tenant, policy_version=version)
        if request.requested is not None and request.requested != tenant:
            decision = dataclasses.replace(decision, requested_tenant=request.requested)
        self._record(decision, request.decided, request.started, policy)
        prefill = read if isinstance(read, Prefill) else None
        return Evaluation(
            decision, policy, prefill, request.conversation, request.decided,
            on_demand=self._prefill_or_fail if keep_cache and prefill is None else None,
        )

    def _evaluate_batch(
        self, inputs: Sequence[RouterInput], configs: Sequence[RunnableConfig]
    ) -> list[Evaluation | Exception]:
        """`evaluate` for many inputs: one batched backend call per group of requests that share
        the first step's sampling (temperature, biases), whatever their tenants; a request that
        fails (bad input, unknown tenant, prompt too long) fails alone."""
        started = time.perf_counter()
        out: list[Evaluation | Exception] = [None] * len(inputs)  # type: ignore[list-item]
        requests: dict[int, _Request] = {}
        for i, (input, config) in enumerate(zip(inputs, configs, strict=True)):
            try:
                requests[i] = self._request(input, None, config, True, started)
            except Exception as exc:
                out[i] = exc
        groups: dict[tuple[bool, float, tuple[tuple[str, float], ...]], list[int]] = {}
        for i, request in requests.items():
            policy = request.policy
            key = (request.one_prefill, policy.temperature, tuple(sorted(policy.logit_bias.items())))
            groups.setdefault(key, []).append(i)
        reads: dict[int, Any] = {}
        for (one_prefill, temperature, bias), rows in groups.items():
            read = self.backend.prefill_batch if one_prefill else self.backend.first_token_distributions
            try:
                got = read([requests[i].decided for i in rows], temperature=temperature, logit_bias=dict(bias),
                           batch_size=self.max_batch_size, return_exceptions=True)
            except Exception as exc:
                got = [exc] * len(rows)
            reads.update(zip(rows, got, strict=True))
        for i, request in requests.items():
            try:
                evaluation = self._conclude(request, reads.pop(i), keep_cache=True)
            except Exception as exc:
                if request.run is not None:
                    request.run.on_chain_error(exc)
                out[i] = exc
                continue
            if request.run is not None:
                request.run.on_chain_end(evaluation.decision.to_dict())
            out[i] = evaluation
        return out

    def _failed(self, policy: TenantPolicy, tenant: str, version: str, exc: BaseException) -> Decision:
        logger.warning(
            "backend failed for tenant %r; fail_mode %s: %s", tenant, policy.fail_mode, _error_text(exc),
            extra={"tenant": tenant, "fail_mode": policy.fail_mode, "policy_version": version,
                   "error_type": type(exc).__name__},
        )
        return fail_decision(policy, tenant=tenant, policy_version=version, error=exc)

    def _record(
        self, decision: Decision, decided: list[ChatMessage], started: float, policy: TenantPolicy
    ) -> None:
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "decision %s%s for tenant %r (policy %s, %.1f ms)",
                decision.action, f" ({decision.category})" if decision.category else "",
                decision.tenant, decision.policy_version, latency_ms,
                extra={"tenant": decision.tenant, "action": decision.action, "category": decision.category,
                       "policy_version": decision.policy_version, "latency_ms": latency_ms,
                       "reason": decision.reason, "requested_tenant": decision.requested_tenant},
            )
        if self.audit is not None:
            self.audit.record(
                decision, decided, latency_ms=latency_ms, decide_on=policy.decide_on,
                model_name=self.backend.model_name,
            )

    # ---- acting --------------------------------------------------------------------------------
    def _options(self, policy: TenantPolicy) -> GenerationOptions:
        """The router's options with the tenant's `max_new_tokens` as a cap: min(caller, policy)."""
        capped = policy.cap_tokens(self.generation.max_new_tokens)
        if capped == self.generation.max_new_tokens:
            return self.generation
        return dataclasses.replace(self.generation, max_new_tokens=capped)

    def answer_prefill(self, evaluation: Evaluation) -> Prefill:
        """The prefill a respond answer continues from: the decision's own when it read the whole
        conversation, else a second prefill of the whole conversation (``needs_answer_prefill``);
        continue it with ``backend.stream(prefill, "respond", options)``."""
        return self._answer_prefill(evaluation)

    def _answer_prefill(self, evaluation: Evaluation) -> Prefill:
        """The prefill the answer continues from: the decision's, or one of the whole conversation."""
        self._no_continuation(evaluation)
        if evaluation._prefill is not None:
            return evaluation._prefill
        if evaluation.conversation is None:
            raise BackendError("this evaluation kept no prefill and no conversation to answer from")
        # decided text != answered text (history under decide_on: last_turn): a second prefill,
        # whose first token is then forced to [respond]; its own distribution is not used
        prefill = self.backend.prefill(evaluation.conversation)
        evaluation.prefill = prefill
        return prefill

    def _prefill_or_fail(self, evaluation: Evaluation) -> Prefill | None:
        """`Evaluation.prefill` on first access: the answer's prefill, or None and the fail mode."""
        if evaluation.decision.reason == "backend_error":
            return None
        try:
            return self._answer_prefill(evaluation)
        except RequestError:
            raise
        except Exception as exc:
            evaluation.decision = self._answer_failed(evaluation, exc)
            return None

    def _answer_failed(self, evaluation: Evaluation, exc: BaseException) -> Decision:
        decision = evaluation.decision
        failed = self._failed(evaluation.policy, decision.tenant, decision.policy_version, exc)
        if decision.requested_tenant is not None:
            failed = dataclasses.replace(failed, requested_tenant=decision.requested_tenant)
        return failed

    def _metadata(self) -> dict[str, Any]:
        return {"model_name": self.backend.model_name}

    def _delegate(self, decision: Decision) -> Runnable | None:
        if decision.action == "route":
            route = self.routes.get(decision.route or "")
            if route is None:
                raise ConfigError(f"the decision routes to {decision.route!r}, which this router does not have "
                                  f"(it has {sorted(self.routes) or 'no routes'}; check_routes is off)")
            return route
        return self.respond_with

    def _no_continuation(self, evaluation: Evaluation) -> None:
        if evaluation.decision.reason == "backend_error":  # fail-open without a working backend
            raise BackendError(
                "the backend failed and fail_mode is 'open', but the router has no respond_with "
                "runnable to answer without the model"
            )

    def _with_decision(self, output: Any, decision: Decision) -> BaseMessage:
        meta = {"refusal_decision": decision.to_dict()}
        if isinstance(output, BaseMessage):
            return output.model_copy(update={"response_metadata": {**output.response_metadata, **meta}})
        return AIMessage(content=output if isinstance(output, str) else str(output), response_metadata=meta)

    def act(
        self,
        evaluation: Evaluation,
        input: RouterInput,
        config: RunnableConfig | None = None,
    ) -> BaseMessage:
        """Turn an evaluation into the answer: refusal, routed answer or continuation."""
        decision = evaluation.decision
        if decision.action == "refuse":
            return refusal_message(decision, **self._metadata())
        delegate = self._delegate(decision)
        if delegate is not None:
            return self._with_decision(delegate.invoke(input, config), decision)
        try:
            prefill = self._answer_prefill(evaluation)
            generation = self.backend.complete(prefill, "respond", self._options(evaluation.policy))
        except RequestError:
            raise
        except Exception as exc:
            if decision.reason == "backend_error":  # fail-open with nothing to answer with
                raise
            return self._fallback(evaluation, exc, input, config)
        return AIMessage(
            content=generation.text,
            response_metadata={"refusal_decision": decision.to_dict(), **self._metadata(),
                               "finish_reason": generation.finish_reason},
        )

    def _fallback(
        self, evaluation: Evaluation, exc: BaseException, input: RouterInput, config: RunnableConfig | None
    ) -> BaseMessage:
        """The answer's backend call failed: the tenant's fail mode decides, as for the decision."""
        failed = self._answer_failed(evaluation, exc)
        if failed.action == "refuse":
            return refusal_message(failed, **self._metadata())
        if self.respond_with is not None:
            return self._with_decision(self.respond_with.invoke(input, config), failed)
        if isinstance(exc, BackendError):
            raise exc
        raise BackendError(f"the backend failed while answering: {_error_text(exc)}") from exc

    def act_stream(
        self,
        evaluation: Evaluation,
        input: RouterInput,
        config: RunnableConfig | None = None,
    ) -> Iterator[BaseMessageChunk]:
        """Stream the answer; a refusal is one chunk and no model text precedes it."""
        decision = evaluation.decision
        if decision.action == "refuse":
            yield _refusal_chunk(decision, **self._metadata())
            return
        delegate = self._delegate(decision)
        if delegate is not None:  # the delegate's answer keeps its own model_name, as in `act`
            meta: dict[str, Any] = {"refusal_decision": decision.to_dict()}
            chunks: Iterator[Any] = delegate.stream(input, config)
        else:
            meta = {"refusal_decision": decision.to_dict(), **self._metadata()}
            model_chunks = chunks = self._model_chunks(evaluation)
            try:
                head = next(chunks, None)  # a failure before any text still gets the fail mode
            except RequestError:
                raise
            except Exception as exc:
                if decision.reason == "backend_error":
                    raise
                failed = self._answer_failed(evaluation, exc)
                if failed.action == "refuse":
                    yield _refusal_chunk(failed, **self._metadata())
                    return
                if self.respond_with is None:
                    raise BackendError(f"the backend failed while answering: {_error_text(exc)}") from exc
                meta = {"refusal_decision": failed.to_dict()}
                chunks = self.respond_with.stream(input, config)
            else:
                chunks = _Prepended(head, model_chunks)
        first = True
        try:
            for piece in chunks:
                chunk = _as_chunk(piece)
                if first:
                    chunk = chunk.model_copy(update={"response_metadata": {**chunk.response_metadata, **meta}})
                    first = False
                yield chunk
        finally:  # a consumer that stops early ends the model's generation now
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        finish = getattr(chunks, "finish_reason", None)
        if first:
            yield AIMessageChunk(content="", response_metadata={**meta, "finish_reason": finish})
        elif finish is not None:  # the model's own answer: how it ended, on a last empty chunk
            yield AIMessageChunk(content="", response_metadata={"finish_reason": finish})

    def _model_chunks(self, evaluation: Evaluation) -> _ModelChunks:
        return _ModelChunks(self, evaluation)

    # ---- Runnable interface --------------------------------------------------------------------
    def _invoke(
        self, input: RouterInput, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> BaseMessage:
        child = patch_config(config, callbacks=run_manager.get_child())
        evaluation = self.evaluate(input, config=child)
        return self.act(evaluation, input, child)

    def invoke(self, input: RouterInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        return self._call_with_config(self._invoke, input, config, run_type="chain", **kwargs)

    def _transform(
        self,
        inputs: Iterator[RouterInput],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[BaseMessageChunk]:
        items = list(inputs)
        if len(items) != 1:
            raise InvalidInputError("RefusalRouter.stream takes exactly one input")
        child = patch_config(config, callbacks=run_manager.get_child())
        evaluation = self.evaluate(items[0], config=child)
        yield from self.act_stream(evaluation, items[0], child)

    def batch(
        self,
        inputs: list[RouterInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Decide on `max_batch_size` inputs at a time with one batched prefill per sampling group,
        then answer each (respond rows continue from their own row's cache; concurrency as
        ``config["max_concurrency"]``). Per-input configs, callbacks, audit and errors as `invoke`."""
        return self._batch_with_config(
            self._batch, list(inputs), config, return_exceptions=return_exceptions, run_type="chain", **kwargs
        )

    async def abatch(
        self,
        inputs: list[RouterInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """`batch` in a worker thread, so the event loop never blocks."""
        return await asyncio.to_thread(self.batch, inputs, config, return_exceptions=return_exceptions, **kwargs)

    def _batch(self, inputs: list[RouterInput], config: list[RunnableConfig]) -> list[BaseMessage | Exception]:
        out: list[BaseMessage | Exception] = []
        for start in range(0, len(inputs), self.max_batch_size):
            chunk = slice(start, start + self.max_batch_size)
            out.extend(self._batch_chunk(inputs[chunk], config[chunk]))
        return out

    def _batch_chunk(self, inputs: list[RouterInput], configs: list[RunnableConfig]) -> list[BaseMessage | Exception]:
        evaluations = self._evaluate_batch(inputs, configs)
        self._prepare_answers([e for e in evaluations if isinstance(e, Evaluation)])

        out: list[Any] = list(evaluations)

        def act(i: int) -> None:
            try:
                out[i] = self.act(evaluations[i], inputs[i], configs[i])  # type: ignore[arg-type]
            except Exception as exc:
                out[i] = exc

        slow = []  # answers and routes run concurrently; refusals cost nothing
        for i, evaluation in enumerate(evaluations):
            if isinstance(evaluation, Evaluation):
                if evaluation.decision.action == "refuse":
                    act(i)
                else:
                    slow.append(i)
        if len(slow) == 1:
            act(slow[0])
        elif slow:
            with get_executor_for_config(configs[0]) as executor:
                list(executor.map(act, slow))
        return out

    def _prepare_answers(self, evaluations: list[Evaluation]) -> None:
        """Free the caches no answer will continue from before any answer is generated, and prefill
        the whole conversations that answers need beyond what was decided (history under
        ``decide_on: last_turn``) in one batch; a failure there is left to `act`, which retries alone."""
        pending: list[Evaluation] = []
        for evaluation in evaluations:
            decision = evaluation.decision
            continues = decision.action == "respond" and self.respond_with is None and decision.reason != "backend_error"
            if not continues:
                if evaluation._prefill is not None:
                    evaluation._prefill.take_state()
            elif evaluation.needs_answer_prefill:
                pending.append(evaluation)
        if not pending:
            return
        prefills = self.backend.prefill_batch(
            [e.conversation for e in pending], batch_size=self.max_batch_size, return_exceptions=True
        )
        for evaluation, prefill in zip(pending, prefills, strict=True):
            if isinstance(prefill, Prefill):
                evaluation.prefill = prefill

    def stream(
        self, input: RouterInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessageChunk]:
        yield from self._transform_stream_with_config(iter([input]), self._transform, config, **kwargs)

    async def astream(
        self, input: RouterInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessageChunk]:
        """Streams without blocking the event loop: each chunk is produced in a worker thread.
        Leaving early, or cancelling the reading task, ends the generation within a token."""
        chunks = ThreadedAsyncIterator(self.stream(input, config, **kwargs))
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
