"""RefusalTokenMiddleware: an agent gate that decides before the agent's model is called."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse, hook_config
from langchain.agents.middleware.types import PrivateStateAttr, TracePolicy, omit_payload
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config

from rt_middleware.errors import ConfigError, InvalidInputError
from rt_middleware.router import Evaluation, RefusalRouter, to_conversation

from ._handoff import HANDOFFS, HandOff
from ._tenant import find_tenant, require_tenant
from .chat_model import ChatRefusalTokens

__all__ = ["RefusalTokenMiddleware", "RefusalTokenState"]

Check = Literal["first", "every"]


class RefusalTokenState(AgentState):
    """Agent state with the latest refusal-token decision (``Decision.to_dict()``: no prompt text)."""

    refusal_decision: NotRequired[dict[str, Any]]
    refusal_handoff: NotRequired[Annotated[str | None, PrivateStateAttr]]


def _run_config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:  # a hook called outside a LangGraph run
        return None


def _with_decision(result: Any, decision: dict[str, Any] | None) -> Any:
    """Stamp the turn's decision on the model's AI messages that lack one."""
    if decision is None or not isinstance(result, ModelResponse):
        return result
    messages = [
        m.model_copy(update={"response_metadata": {**m.response_metadata, "refusal_decision": decision}})
        if isinstance(m, AIMessage) and "refusal_decision" not in m.response_metadata
        else m
        for m in result.result
    ]
    return ModelResponse(result=messages, structured_response=result.structured_response)


class RefusalTokenMiddleware(AgentMiddleware[RefusalTokenState, Any, Any]):
    """Refuse, route or let the agent proceed, decided by a `RefusalRouter` before each model turn.

    - refuse: the run ends with the policy's refusal message (a standard refusal block) and the
      agent's model and tools are never called;
    - route: the route's runnable answers and the run ends;
    - respond: the agent's model is called. Where that model is a `ChatRefusalTokens` over the
      same backend, it continues this decision's prefill instead of deciding again (one prefill
      per turn); any `ChatRefusalTokens` is told the tenant, so its policy's biases apply.

    ``check="first"`` decides once per user turn (when the last message is human); ``"every"``
    before every model call, tool results included. Tenant: ``runtime.context.tenant_id``, then
    ``configurable.tenant_id``, then the policy store's default tenant, else `MissingTenantError`.
    The decision is kept in state (``refusal_decision``) and in the answer's
    ``response_metadata``. The conversation decided on is the agent state's messages (the
    agent's system prompt is not part of it). Hook inputs (the conversation) stay out of traces
    unless ``trace_payload=True``.
    """

    state_schema = RefusalTokenState

    def __init__(self, router: RefusalRouter, *, check: Check = "first", trace_payload: bool = False) -> None:
        if not isinstance(router, RefusalRouter):
            raise ConfigError(f"router must be a RefusalRouter, got {type(router).__name__}")
        if check not in ("first", "every"):
            raise ConfigError(f"check must be 'first' or 'every', got {check!r}")
        self.router = router
        self.check: Check = check
        self.trace_policy = None if trace_payload else TracePolicy(process_inputs=omit_payload)

    # ---- deciding ------------------------------------------------------------------------------
    def _decides(self, messages: Sequence[BaseMessage]) -> bool:
        if not messages:
            raise InvalidInputError("the conversation is empty: the agent state has no messages to decide on")
        return self.check == "every" or isinstance(messages[-1], HumanMessage)

    def _outcome(self, evaluation: Evaluation, messages: Sequence[BaseMessage]) -> dict[str, Any]:
        """State update for a respond decision; refuse/route need `_answer` too."""
        update: dict[str, Any] = {"refusal_decision": evaluation.decision.to_dict(), "refusal_handoff": None}
        if evaluation.decision.action == "respond" and evaluation.prefill is not None:
            handoff = HandOff(evaluation, tuple(to_conversation(list(messages))), self.router.backend)
            update["refusal_handoff"] = HANDOFFS.deposit(handoff)
        return update

    def _answer(self, evaluation: Evaluation, messages: Sequence[BaseMessage]) -> dict[str, Any]:
        message = self.router.act(evaluation, list(messages), _run_config())
        return {"messages": [message], "jump_to": "end"}

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: RefusalTokenState, runtime: Any) -> dict[str, Any] | None:
        messages = state["messages"]
        if not self._decides(messages):
            return {"refusal_handoff": None}
        tenant = require_tenant(runtime, self.router.policies)
        evaluation = self.router.evaluate(list(messages), tenant_id=tenant)
        update = self._outcome(evaluation, messages)
        if evaluation.decision.action != "respond":
            update.update(self._answer(evaluation, messages))
        return update

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: RefusalTokenState, runtime: Any) -> dict[str, Any] | None:
        messages = state["messages"]
        if not self._decides(messages):
            return {"refusal_handoff": None}
        tenant = require_tenant(runtime, self.router.policies)
        evaluation = await asyncio.to_thread(self.router.evaluate, list(messages), tenant_id=tenant)
        update = self._outcome(evaluation, messages)
        if evaluation.decision.action != "respond":
            update.update(await asyncio.to_thread(self._answer, evaluation, messages))
        return update

    # ---- handing the decided turn to the agent's model ---------------------------------------
    def _hand_over(self, request: ModelRequest) -> ModelRequest:
        key = request.state.get("refusal_handoff")
        model = request.model
        if not isinstance(model, ChatRefusalTokens):
            HANDOFFS.discard(key)
            return request
        settings = dict(request.model_settings)
        tenant = find_tenant(request.runtime)
        if tenant is not None:
            settings.setdefault("tenant_id", tenant)
        if key is not None and model.router.backend is self.router.backend:
            settings["refusal_handoff"] = key
        else:
            HANDOFFS.discard(key)
        return request.override(model_settings=settings)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        request = self._hand_over(request)
        return _with_decision(handler(request), request.state.get("refusal_decision"))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        request = self._hand_over(request)
        return _with_decision(await handler(request), request.state.get("refusal_decision"))
