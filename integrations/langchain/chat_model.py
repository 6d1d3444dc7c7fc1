"""ChatRefusalTokens: a chat model that decides from the first token before it streams anything."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.base import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig, ensure_config
from pydantic import ConfigDict, Field

from rt_middleware.router import Evaluation, RefusalRouter, to_conversation

from ._handoff import HANDOFFS

__all__ = ["ChatRefusalTokens"]

_TENANT = "tenant_id"
_HANDOFF = "refusal_handoff"


def _configured_tenant(config: RunnableConfig | None) -> str | None:
    return ensure_config(config).get("configurable", {}).get(_TENANT)


def _with_tenant(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Carry `configurable.tenant_id` of the call's config into the model call's kwargs."""
    if kwargs.get(_TENANT) is None:
        tenant = _configured_tenant(config)
        if tenant is not None:
            return {**kwargs, _TENANT: tenant}
    return kwargs


def _as_ai_chunk(chunk: BaseMessageChunk) -> AIMessageChunk:
    if isinstance(chunk, AIMessageChunk):
        return chunk
    return AIMessageChunk(content=chunk.content, response_metadata=chunk.response_metadata)


class ChatRefusalTokens(BaseChatModel):
    """A refusal-token model as a LangChain chat model, gated per tenant by a `RefusalRouter`.

    Each call decides from one prefill before anything is emitted: a refusal is one message (or
    one chunk) with a text block and a standard ``refusal`` block, so a refused stream carries no
    model text; an answer continues from the same prefill's KV cache. Refusals work unchanged
    with `ModelRefusalMiddleware` + `ModelFallbackMiddleware`.

    Tenant, first found wins: a ``tenant_id`` call argument (``model.invoke(x, tenant_id="bank")``),
    ``configurable.tenant_id`` of the call's or the surrounding run's config, this model's
    ``tenant_id`` field, the policy store's default tenant. It does not call tools.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: RefusalRouter
    """Decides (backend + tenant policies) and acts (refusal, routes, continuation)."""
    tenant_id: str | None = None
    """Tenant used when neither the call nor its config names one."""
    temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature of the continuation (0 = greedy); None keeps the router's. The decision's
    temperature is the tenant policy's."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on generated tokens; None keeps the router's (a tenant's `max_new_tokens` wins)."""
    stop: list[str] | None = None
    """Stop strings of the continuation."""
    streaming: bool = False
    """Use the streaming path inside `invoke` as well."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _llm_type(self) -> str:
        return "refusal-tokens"

    @property
    def model_name(self) -> str:
        return str(self.router.backend.model_name)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "policy_version": self.router.policies.version}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="rt-middleware",
            ls_model_name=kwargs["model"] if isinstance(kwargs.get("model"), str) else self.model_name,
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ---- tenant from the call's config: BaseChatModel does not put it in the context --------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **_with_tenant(config, kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **_with_tenant(config, kwargs))

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        yield from super().stream(input, config, stop=stop, **_with_tenant(config, kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        async for chunk in super().astream(input, config, stop=stop, **_with_tenant(config, kwargs)):
            yield chunk

    # ---- deciding and acting ----------------------------------------------------------------
    def _acting_router(self, stop: list[str] | None) -> RefusalRouter:
        """The router with this model's generation settings (a shallow copy only when they differ)."""
        overrides: dict[str, Any] = {}
        if self.temperature is not None:
            overrides["temperature"] = self.temperature
        if self.max_tokens is not None:
            overrides["max_new_tokens"] = self.max_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            overrides["stop"] = tuple(stops)
        if not overrides:
            return self.router
        generation = dataclasses.replace(self.router.generation, **overrides)
        return self.router.model_copy(update={"generation": generation})

    def _evaluate(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Evaluation:
        """Take the decision a `RefusalTokenMiddleware` handed over for exactly these messages, or decide."""
        handoff = HANDOFFS.claim(kwargs.get(_HANDOFF))
        conversation = to_conversation(messages)
        if handoff is not None and handoff.fits(self.router.backend, conversation):
            return handoff.evaluation
        if handoff is not None:
            handoff.release()  # decided on another conversation or backend: decide this one afresh
        tenant = kwargs.get(_TENANT) or _configured_tenant(None) or self.tenant_id
        return self.router.evaluate(messages, tenant_id=tenant)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        evaluation = self._evaluate(messages, kwargs)
        message = self._acting_router(stop).act(evaluation, messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        evaluation = self._evaluate(messages, kwargs)  # decided before the first chunk exists
        router = self._acting_router(stop)
        for chunk in router.act_stream(evaluation, messages):
            yield ChatGenerationChunk(message=_as_ai_chunk(chunk))
