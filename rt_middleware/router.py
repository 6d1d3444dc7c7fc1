"""RefusalRouter: the LangChain runnable that decides from one prefill, then refuses, routes or answers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict, Field

from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill
from rt_middleware.decision import Decision, decide, fail_decision
from rt_middleware.errors import BackendError, InvalidInputError
from rt_middleware.messages import ChatMessage
from rt_middleware.policy import PolicyStore, TenantPolicy

__all__ = ["Evaluation", "RefusalRouter", "refusal_message", "to_conversation"]

RouterInput = str | Sequence[BaseMessage | Mapping[str, Any] | tuple[str, str]] | PromptValue
_TEXT_BLOCKS = frozenset({"text", "refusal", "reasoning"})


def _message_text(message: BaseMessage, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    for block in message.content:
        kind = block.get("type") if isinstance(block, dict) else "text"
        if kind not in _TEXT_BLOCKS and kind not in ("tool_use", "tool_call"):
            raise InvalidInputError(
                f"message {index} has {kind!r} content; this model reads text only"
            )
    return message.text


def to_conversation(value: RouterInput) -> list[ChatMessage]:
    """LangChain input (str, messages, PromptValue) -> framework-free conversation."""
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, str):
        return [ChatMessage("user", value)]
    if not isinstance(value, Sequence) or not value:
        raise InvalidInputError("the conversation is empty: give a prompt or at least one message")
    try:
        messages = convert_to_messages(value)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InvalidInputError(f"cannot read the input as chat messages: {exc}") from exc
    out: list[ChatMessage] = []
    for i, msg in enumerate(messages):
        text = _message_text(msg, i)
        if isinstance(msg, SystemMessage):
            out.append(ChatMessage("system", text))
        elif isinstance(msg, AIMessage):
            out.append(ChatMessage("assistant", text))
        elif isinstance(msg, ToolMessage):
            out.append(ChatMessage("user", f"[tool result] {text}"))
        else:
            out.append(ChatMessage("user", text))
    return out


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


@dataclass
class Evaluation:
    """A decision plus what is needed to act on it without a second prefill."""

    decision: Decision
    policy: TenantPolicy
    prefill: Prefill | None


class RefusalRouter(RunnableSerializable[RouterInput, BaseMessage]):
    """Decide from the first-token distribution, then refuse, route or continue generating.

    Tenant: ``config["configurable"]["tenant_id"]`` (else the store's default tenant). Every output
    carries ``response_metadata["refusal_decision"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any
    """A `BaseBackend` (HFBackend, LlamaCppBackend, ...)."""
    policies: PolicyStore
    routes: dict[str, Runnable] = Field(default_factory=dict)
    """Route name -> runnable that answers inputs whose decision is `route`."""
    respond_with: Runnable | None = None
    """Answers responded inputs instead of continuing the model's own generation."""
    generation: GenerationOptions = Field(default_factory=GenerationOptions)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # after pydantic: a PolicyError raised in a validator would be re-wrapped as ValidationError
        if not isinstance(self.backend, BaseBackend):
            raise TypeError(f"backend must be a BaseBackend, got {type(self.backend).__name__}")
        self.policies.require(categories=self.backend.schema.category_names, routes=self.routes)

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
        """Decide, keeping the prefill so a continuation reuses its KV cache.

        Traced (where `config` or the surrounding run has callbacks) as a run named
        ``refusal_decision``: outputs ``Decision.to_dict()``, metadata ``tenant`` and
        ``policy_version``; its inputs hold the conversation unless ``trace_payload=False``.
        """
        tenant, policy, version = self.policies.resolve(self._tenant(config, tenant_id))
        conversation = to_conversation(input)
        run = _decision_run(config, conversation if trace_payload else None, tenant=tenant, policy_version=version)
        try:
            evaluation = self._evaluate(conversation, tenant, policy, version, keep_cache)
        except BaseException as exc:
            if run is not None:
                run.on_chain_error(exc)
            raise
        if run is not None:
            run.on_chain_end(evaluation.decision.to_dict())
        return evaluation

    def _evaluate(
        self, conversation: list[ChatMessage], tenant: str, policy: TenantPolicy, version: str, keep_cache: bool
    ) -> Evaluation:
        sampling = {"temperature": policy.temperature, "logit_bias": policy.logit_bias}
        try:
            if keep_cache:
                prefill: Prefill | None = self.backend.prefill(conversation, **sampling)
                distribution = prefill.distribution
            else:
                prefill = None
                distribution = self.backend.first_token_distribution(conversation, **sampling)
        except BackendError as exc:
            decision = fail_decision(policy, tenant=tenant, policy_version=version, error=exc)
            return Evaluation(decision=decision, policy=policy, prefill=None)
        decision = decide(distribution, policy, tenant=tenant, policy_version=version)
        return Evaluation(decision=decision, policy=policy, prefill=prefill)

    # ---- acting --------------------------------------------------------------------------------
    def _options(self, policy: TenantPolicy) -> GenerationOptions:
        if policy.max_new_tokens is None:
            return self.generation
        return dataclasses.replace(self.generation, max_new_tokens=policy.max_new_tokens)

    def _metadata(self) -> dict[str, Any]:
        return {"model_name": self.backend.model_name}

    def _delegate(self, decision: Decision) -> Runnable | None:
        if decision.action == "route":
            return self.routes[decision.route or ""]
        return self.respond_with

    def _no_continuation(self, evaluation: Evaluation) -> None:
        if evaluation.prefill is None:  # fail-open without a working backend
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
        self._no_continuation(evaluation)
        assert evaluation.prefill is not None
        text = self.backend.generate(evaluation.prefill, "respond", self._options(evaluation.policy))
        return AIMessage(content=text, response_metadata={"refusal_decision": decision.to_dict(), **self._metadata()})

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
        meta = {"refusal_decision": decision.to_dict(), **self._metadata()}
        delegate = self._delegate(decision)
        if delegate is not None:
            chunks: Iterator[Any] = delegate.stream(input, config)
        else:
            self._no_continuation(evaluation)
            assert evaluation.prefill is not None
            chunks = self.backend.stream(evaluation.prefill, "respond", self._options(evaluation.policy))
        first = True
        for piece in chunks:
            chunk = piece if isinstance(piece, BaseMessageChunk) else AIMessageChunk(
                content=piece.text if isinstance(piece, BaseMessage) else str(piece)
            )
            if first:
                chunk = chunk.model_copy(update={"response_metadata": {**chunk.response_metadata, **meta}})
                first = False
            yield chunk
        if first:
            yield AIMessageChunk(content="", response_metadata=meta)

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

    def stream(
        self, input: RouterInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessageChunk]:
        yield from self._transform_stream_with_config(iter([input]), self._transform, config, **kwargs)

    async def astream(
        self, input: RouterInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessageChunk]:
        """Streams without blocking the event loop: each chunk is produced in a worker thread."""
        iterator = self.stream(input, config, **kwargs)
        done = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, iterator, done)
                if chunk is done:
                    return
                yield chunk  # type: ignore[misc]
        finally:
            await asyncio.to_thread(iterator.close)
