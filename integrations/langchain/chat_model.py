"""ChatRefusalTokens: a chat model that decides from the first token before it streams anything."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager, CallbackManager, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.base import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import get_callback_manager_for_config, patch_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from rt_middleware.backends.base import BaseBackend
from rt_middleware.decision import fail_decision
from rt_middleware.errors import BackendError
from rt_middleware.router import Evaluation, RefusalRouter, to_conversation

from ._handoff import HANDOFF_KEY, HandOff, decided_messages
from ._tools import (
    ToolsNotSupportedError,
    parse_tool_calls,
    render_tool_calls,
    template_supports_tools,
    template_with_tools,
    tool_convention,
)

__all__ = ["ChatRefusalTokens"]

_TENANT = "tenant_id"
_TOOLS = "tools"
_CALL_CONFIG = "refusal_call_config"
"""The model call argument that carries the caller's config to `_generate`/`_stream` (kept out of the
traced params and the cache key): BaseChatModel passes on only the callbacks, and under `stream` not even those."""
_PER_CALL = (HANDOFF_KEY, _CALL_CONFIG)
_VIEWS = 8
"""Backend views (one per distinct tool set) kept per chat model."""


def _configured_tenant(config: RunnableConfig | None) -> str | None:
    return ensure_config(config).get("configurable", {}).get(_TENANT)


def _with_call_config(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model call's kwargs plus the call's config and its `configurable.tenant_id` (traced)."""
    config = ensure_config(config)
    tenant = _configured_tenant(config)
    if kwargs.get(_TENANT) is None and tenant is not None:
        kwargs = {**kwargs, _TENANT: tenant}
    return {**kwargs, _CALL_CONFIG: config}


def _streamed_call_config(config: RunnableConfig | None) -> RunnableConfig:
    """The call's config with the model run's id and callbacks settled before `stream` starts the run.

    langchain-core's `BaseChatModel.stream`/`astream` open the model run but call `_stream` without
    its run manager; with the run id known and the configured handlers shared, `_nested_config`
    puts the decision and route runs under that run, as under `invoke`."""
    config = ensure_config(config)
    config["callbacks"] = get_callback_manager_for_config(config)
    config["run_id"] = config.get("run_id") or uuid.uuid4()
    return config


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
    ``tenant_id`` field, the policy store's default tenant.

    The decision reads the tenant policy's ``decide_on`` part of the request (``last_turn``:
    system prompt + latest user message). One prefill decides and answers when that is the whole
    request (a single turn, or ``decide_on: conversation``); with history under ``last_turn`` the
    answer needs a second prefill. Behind a `RefusalTokenMiddleware` over the same backend it takes
    the middleware's decision instead of deciding again.

    Drop-in extras: `bind_tools` (chat templates that render ``tools``; tool calls parsed from
    ``<tool_call>`` tags or Llama 3.1 JSON; otherwise `ToolsNotSupportedError` pointing to guard
    mode), `with_structured_output` on top of it, ``usage_metadata`` on every answer (prompt
    tokens prefilled in the call; generated tokens) and ``response_metadata["finish_reason"]``.
    ``max_tokens`` is the caller's limit; a tenant's ``max_new_tokens`` caps it (the smaller wins).
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

    _views: dict[str, BaseBackend] = PrivateAttr(default_factory=dict)
    _views_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

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

    # ---- the call's config: BaseChatModel does not put it in the context -------------------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **_with_call_config(config, kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **_with_call_config(config, kwargs))

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config = _streamed_call_config(config)
        yield from super().stream(input, config, stop=stop, **_with_call_config(config, kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config = _streamed_call_config(config)
        async for chunk in super().astream(input, config, stop=stop, **_with_call_config(config, kwargs)):
            yield chunk

    # ---- tools ----------------------------------------------------------------------------------
    @property
    def _template(self) -> str | None:
        return getattr(self.router.backend, "chat_template", None)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools, rendered through the model's own chat template; tool calls are parsed back.

        Needs a chat template that reads ``tools`` (Qwen/Hermes ``<tool_call>`` or Llama 3.1 JSON
        conventions are parsed); otherwise `ToolsNotSupportedError` says to use guard mode.
        ``tool_choice`` cannot force a call (no constrained decoding): ``"none"`` leaves the tools
        out of the prompt; any other value renders them and the model chooses.
        """
        if not template_supports_tools(self._template):
            raise ToolsNotSupportedError(
                f"the chat template of {self.model_name!r} has no tool support, so this model cannot call "
                "tools. Use guard mode: put RefusalTokenMiddleware(router) in front of a tool-calling chat "
                "model (create_agent(model=<that model>, tools=..., middleware=[RefusalTokenMiddleware("
                "router)])), or use a refusal-token model whose chat template renders `tools`"
            )
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        template_with_tools(self._template or "", formatted, self.router.backend.schema.tokens)  # check now
        if tool_choice in ("none", False):
            formatted = []
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _tools_router(self, router: RefusalRouter, tools: Sequence[dict[str, Any]] | None) -> RefusalRouter:
        """`router` over a view of its backend whose template renders `tools` (same model and caches)."""
        if not tools:
            return router
        template = template_with_tools(self._template or "", tools, self.router.backend.schema.tokens)
        with self._views_lock:  # agents call one model from many threads
            views = self._views
            view = views.pop(template, None) or _with_template(self.router.backend, template)
            views[template] = view
            while len(views) > _VIEWS:
                views.pop(next(iter(views)))
        return router.model_copy(update={"backend": view})

    def _readable(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """Earlier tool calls written back as the text the model wrote (backends read text only)."""
        convention = tool_convention(self._template)
        return [render_tool_calls(m, convention) for m in messages]

    # ---- deciding and acting ----------------------------------------------------------------
    def _acting_router(self, stop: list[str] | None) -> RefusalRouter:
        """The router with this model's generation settings (a shallow copy only when they differ).

        ``max_tokens`` is the caller's limit; a tenant policy's ``max_new_tokens`` caps it further.
        """
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

    def _answer_prefill(self, router: RefusalRouter, evaluation: Evaluation, messages: list[BaseMessage]) -> Evaluation:
        """A decided `respond` whose decision read another text: prefill what is answered, no new decision."""
        decision, policy = evaluation.decision, evaluation.policy
        if decision.action != "respond" or router.respond_with is not None:
            return Evaluation(decision=decision, policy=policy, prefill=None)
        try:
            prefill = router.backend.prefill(
                to_conversation(messages), temperature=policy.temperature, logit_bias=policy.logit_bias
            )
        except BackendError as exc:
            failed = fail_decision(policy, tenant=decision.tenant, policy_version=decision.policy_version, error=exc)
            return Evaluation(decision=failed, policy=policy, prefill=None)
        return Evaluation(decision=decision, policy=policy, prefill=prefill)

    def _evaluate(
        self,
        router: RefusalRouter,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        config: RunnableConfig,
    ) -> tuple[Evaluation, int]:
        """(evaluation to act on, prompt tokens prefilled in this call).

        Takes a `RefusalTokenMiddleware` hand-off: its prefill where it fits these messages, else
        its decision (the answer gets its own prefill). Without one, decides per the tenant's
        ``decide_on``: one prefill when the decided text is the whole request, else a decision
        prefill on the last turn and an answer prefill on everything.
        """
        handoff = kwargs.get(HANDOFF_KEY)
        if isinstance(handoff, HandOff) and handoff.backend is self.router.backend:
            if router.backend is self.router.backend and handoff.fits(router.backend, to_conversation(messages)):
                return handoff.evaluation, 0  # prefilled by the middleware
            evaluation = self._answer_prefill(router, handoff.evaluation, messages)
            return evaluation, _prompt_tokens(evaluation)
        tenant = kwargs.get(_TENANT) or _configured_tenant(config) or self.tenant_id
        _, policy, _ = router.policies.resolve(tenant)
        decided = decided_messages(messages, getattr(policy, "decide_on", "last_turn"))
        if len(decided) == len(messages):
            evaluation = router.evaluate(messages, tenant_id=tenant, config=config)
            return evaluation, _prompt_tokens(evaluation)
        evaluation = router.evaluate(decided, tenant_id=tenant, config=config)
        decided_tokens = _prompt_tokens(evaluation)
        _release(evaluation)
        evaluation = self._answer_prefill(router, evaluation, messages)
        return evaluation, decided_tokens + _prompt_tokens(evaluation)

    def _nested_config(
        self, run_manager: CallbackManagerForLLMRun | None, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> RunnableConfig:
        """The caller's config (configurable, tags, metadata) for the runs nested in this model call
        (the decision, a route), with callbacks under this model's run, as `RefusalRouter` gives them.

        Under `stream`/`astream` there is no run manager: the run is the one `_streamed_call_config`
        settled, and its inherited metadata gets the LangSmith params as `BaseChatModel` adds them."""
        config = ensure_config(kwargs.get(_CALL_CONFIG))
        callbacks = config.get("callbacks")
        run: BaseCallbackManager
        if run_manager is not None:
            run_id, run, metadata = run_manager.run_id, run_manager, run_manager.inheritable_metadata
        elif isinstance(callbacks, CallbackManager) and config.get("run_id") is not None:
            run_id, run = config["run_id"], callbacks
            metadata = {**callbacks.inheritable_metadata, **self._get_ls_params_with_defaults(stop=stop, **kwargs)}
        else:  # `_generate`/`_stream` called directly: no model run to nest under
            return config
        children = CallbackManager(handlers=[], parent_run_id=run_id)
        children.set_handlers(run.inheritable_handlers)
        children.add_tags(run.inheritable_tags)
        children.add_metadata(metadata)
        return patch_config(config, callbacks=children)

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], config: RunnableConfig
    ) -> tuple[RefusalRouter, list[BaseMessage], Evaluation, int]:
        tools = kwargs.get(_TOOLS) or None
        router = self._tools_router(self._acting_router(stop), tools)
        readable = self._readable(messages) if tools or any(isinstance(m, AIMessage) and m.tool_calls
                                                            for m in messages) else messages
        evaluation, prompt_tokens = self._evaluate(router, readable, kwargs, config)
        return router, readable, evaluation, prompt_tokens

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._nested_config(run_manager, stop, kwargs)
        router, readable, evaluation, prompt_tokens = self._prepare(messages, stop, kwargs, config)
        message = router.act(evaluation, readable, config)
        message = _finished(router, message, evaluation, prompt_tokens, parse_tools=bool(kwargs.get(_TOOLS)))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # decided before the first chunk exists
        config = self._nested_config(run_manager, stop, kwargs)
        router, readable, evaluation, prompt_tokens = self._prepare(messages, stop, kwargs, config)
        chunks = (_as_ai_chunk(chunk) for chunk in router.act_stream(evaluation, readable, config))
        if kwargs.get(_TOOLS) and evaluation.decision.action == "respond":
            # a tool call is known only once complete: with tools bound an answer is one chunk
            whole = _merged(list(chunks))
            message = _finished(router, whole, evaluation, prompt_tokens, parse_tools=True)
            yield ChatGenerationChunk(message=_to_chunk(message))
            return
        last: AIMessageChunk | None = None
        text = ""
        for chunk in chunks:
            if last is not None:
                yield ChatGenerationChunk(message=last)
            last = chunk
            text += chunk.text
        if last is not None:
            yield ChatGenerationChunk(message=_finished_chunk(router, last, text, evaluation, prompt_tokens))

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Traced call parameters: never the middleware's hand-off (it holds the decided turn) nor the
        caller's config."""
        return super()._get_invocation_params(stop=stop, **_without_per_call(kwargs))

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        """Cache key: without the hand-off and the caller's config (new objects on every call)."""
        return super()._get_llm_string(stop=stop, **_without_per_call(kwargs))


# ---- helpers ------------------------------------------------------------------------------------
def _with_template(backend: BaseBackend, template: str) -> BaseBackend:
    """A shallow copy of `backend` rendering with `template` (the same model, tokenizer and caches)."""
    view = copy.copy(backend)
    view.chat_template = template  # type: ignore[attr-defined]
    encoder = getattr(backend, "encoder", None)
    if encoder is not None and hasattr(encoder, "chat_template"):  # HFBackend renders through its ChatEncoder
        view.encoder = copy.copy(encoder)  # type: ignore[attr-defined]
        view.encoder.chat_template = template  # type: ignore[attr-defined]
    if hasattr(backend, "_template"):  # LlamaCppBackend compiles its template once, at load
        from rt_middleware.backends.llamacpp import _compile_template

        view._template = _compile_template(template)  # type: ignore[attr-defined]
    return view


def _without_per_call(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's kwargs without the objects that live for one call only (`_PER_CALL`)."""
    return {key: value for key, value in kwargs.items() if key not in _PER_CALL}


def _prompt_tokens(evaluation: Evaluation) -> int:
    return len(evaluation.prefill.input_ids) if evaluation.prefill is not None else 0


def _release(evaluation: Evaluation) -> None:
    prefill = evaluation.prefill
    if prefill is not None and not prefill.consumed:
        prefill.take_state()


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0] if chunks else AIMessageChunk(content="")
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def _usage(prompt_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=prompt_tokens, output_tokens=output_tokens, total_tokens=prompt_tokens + output_tokens
    )


def _output_tokens(router: RefusalRouter, message: BaseMessage, evaluation: Evaluation) -> int:
    """Tokens the model generated for this answer; 0 for refusals and routed answers (no generation).
    The limit is the caller's ``max_tokens`` capped by the tenant's ``max_new_tokens``."""
    reported = message.response_metadata.get("output_tokens")
    if isinstance(reported, int):
        return reported
    if evaluation.decision.action != "respond" or evaluation.prefill is None or router.respond_with is not None:
        return 0
    return router.backend.answer_tokens(message.text, message.response_metadata.get("finish_reason"),
                                        evaluation.policy.cap_tokens(router.generation.max_new_tokens))


def _finished(
    router: RefusalRouter, message: BaseMessage, evaluation: Evaluation, prompt_tokens: int, *, parse_tools: bool
) -> AIMessage:
    """The answer as an AIMessage with usage, finish reason and tool calls: a delegate's own, and
    (tools bound) those parsed from the model's text."""
    metadata = dict(message.response_metadata)
    metadata.setdefault("finish_reason", "stop")
    usage = _usage(prompt_tokens, _output_tokens(router, message, evaluation))
    content: Any = message.content
    tool_calls: list[Any] = list(message.tool_calls) if isinstance(message, AIMessage) else []
    invalid: list[Any] = list(message.invalid_tool_calls) if isinstance(message, AIMessage) else []
    if parse_tools and evaluation.decision.action == "respond" and isinstance(content, str):
        content, parsed, parsed_invalid = parse_tool_calls(content)
        tool_calls += parsed
        invalid += parsed_invalid
        if parsed:
            metadata["finish_reason"] = "tool_calls"
    return AIMessage(content=content, response_metadata=metadata, usage_metadata=usage,
                     tool_calls=tool_calls, invalid_tool_calls=invalid, id=message.id)


def _to_chunk(message: AIMessage) -> AIMessageChunk:
    return AIMessageChunk(
        content=message.content, response_metadata=message.response_metadata, usage_metadata=message.usage_metadata,
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
            for i, c in enumerate(message.tool_calls)
        ],
        id=message.id,
    )


def _finished_chunk(
    router: RefusalRouter, chunk: AIMessageChunk, text: str, evaluation: Evaluation, prompt_tokens: int
) -> AIMessageChunk:
    """The stream's last chunk carries the usage (of the whole `text`) and the finish reason."""
    metadata = {**chunk.response_metadata}
    metadata.setdefault("finish_reason", "stop")
    usage = _usage(prompt_tokens, _output_tokens(router, AIMessage(text, response_metadata=metadata), evaluation))
    return chunk.model_copy(update={"response_metadata": metadata, "usage_metadata": usage})
