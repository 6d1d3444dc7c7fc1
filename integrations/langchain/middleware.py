"""RefusalTokenMiddleware: an agent gate that decides on each model request before the model runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse, TracePolicy, omit_payload
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.types import Command

from rt_middleware.errors import ConfigError, InvalidInputError
from rt_middleware.router import Evaluation, RefusalRouter, to_conversation

from ._handoff import HANDOFF_KEY, HandOff, decided_messages
from ._tenant import find_tenant, require_tenant
from .chat_model import ChatRefusalTokens

__all__ = ["RefusalTokenMiddleware", "RefusalTokenState"]

Check = Literal["first", "every"]


class RefusalTokenState(AgentState):
    """Agent state with the latest refusal-token decision (``Decision.to_dict()``: no prompt text)."""

    refusal_decision: NotRequired[dict[str, Any]]


def _run_config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:  # called outside a LangGraph run
        return None


def _with_decision(response: ModelResponse, decision: dict[str, Any] | None) -> ModelResponse:
    """Stamp the turn's decision on the model's AI messages that lack one."""
    if decision is None:
        return response
    messages = [
        m.model_copy(update={"response_metadata": {**m.response_metadata, "refusal_decision": decision}})
        if isinstance(m, AIMessage) and "refusal_decision" not in m.response_metadata
        else m
        for m in response.result
    ]
    return ModelResponse(result=messages, structured_response=response.structured_response)


@dataclass
class _Turn:
    """One decided model request: who asks, what the model sees and what the decision reads."""

    tenant: str | None
    seen: list[BaseMessage]
    decided: list[BaseMessage]
    hand_over: bool
    """True when the agent's model can continue the decision's own prefill (one prefill)."""


class RefusalTokenMiddleware(AgentMiddleware[RefusalTokenState, Any, Any]):
    """Refuse, route or let the agent's model answer, decided on the model request itself.

    The decision reads what the model would see: the agent's system prompt plus the messages, cut
    to the tenant policy's ``decide_on`` (``last_turn``, the default: system prompt + latest user
    message; ``conversation``: everything). Then:

    - refuse: the model call is replaced by the policy's refusal message (a standard ``refusal``
      block); the model and the tools are never called, and the run ends;
    - route: the route's runnable answers in the model's place, and the run ends;
    - respond: the agent's model is called. Where it is a `ChatRefusalTokens` over the same backend
      and the decided text is what it answers from, it continues this decision's prefill (one
      prefill per turn); otherwise it answers without deciding again (a second prefill for the
      answer where needed).

    The refusal or route answer is the model node's output, so ``stream_mode="messages"``
    consumers keeping ``langgraph_node == "model"`` see it, and ``"updates"`` show it under
    ``model``. ``check="first"`` decides once per user turn (when the last message is human);
    ``"every"`` before every model call, tool results included. Tenant: ``runtime.context.tenant_id``,
    then ``configurable.tenant_id``, then the policy store's default tenant, else `MissingTenantError`.
    The decision is kept in state (``refusal_decision``) and in the answer's ``response_metadata``.

    Tracing: every decision is a run named ``refusal_decision`` (outputs: ``Decision.to_dict()``;
    metadata: tenant, policy version, action, category). ``trace_payload=False`` (the default)
    records no prompt text in this middleware's own spans: the ``wrap_model_call`` hook span and
    the ``refusal_decision`` run. It does not hide the prompt elsewhere: the agent's root run, the
    chat model's run, route runnables and the final answer still carry the conversation.
    """

    state_schema = RefusalTokenState

    def __init__(self, router: RefusalRouter, *, check: Check = "first", trace_payload: bool = False) -> None:
        if not isinstance(router, RefusalRouter):
            raise ConfigError(f"router must be a RefusalRouter, got {type(router).__name__}")
        if check not in ("first", "every"):
            raise ConfigError(f"check must be 'first' or 'every', got {check!r}")
        self.router = router
        self.check: Check = check
        self.trace_payload = trace_payload
        self.trace_policy = None if trace_payload else TracePolicy(process_inputs=omit_payload)

    # ---- deciding ------------------------------------------------------------------------------
    def _turn(self, request: ModelRequest) -> _Turn | None:
        """The request to decide on, or None where ``check="first"`` has decided this turn already."""
        messages = list(request.messages)
        if not messages:
            raise InvalidInputError("the conversation is empty: the agent state has no messages to decide on")
        if self.check == "first" and not isinstance(messages[-1], HumanMessage):
            return None
        tenant = require_tenant(request.runtime, self.router.policies)
        _, policy, _ = self.router.policies.resolve(tenant)
        seen = [request.system_message, *messages] if request.system_message is not None else messages
        decided = decided_messages(seen, getattr(policy, "decide_on", "last_turn"))
        model = request.model
        hand_over = (
            isinstance(model, ChatRefusalTokens)
            and model.router.backend is self.router.backend
            and len(decided) == len(seen)
            and not request.tools
            and request.response_format is None
        )
        return _Turn(tenant, seen, decided, hand_over)

    def _evaluate(self, turn: _Turn) -> Evaluation:
        return self.router.evaluate(
            turn.decided, tenant_id=turn.tenant, config=_run_config(), keep_cache=turn.hand_over,
            trace_payload=self.trace_payload,
        )

    def _answer(self, evaluation: Evaluation, turn: _Turn) -> BaseMessage:
        """The refusal or the route's answer, in the model's place."""
        try:
            return self.router.act(evaluation, turn.seen, _run_config())
        finally:
            if evaluation.prefill is not None and not evaluation.prefill.consumed:
                evaluation.prefill.take_state()

    # ---- handing the decided turn to the agent's model ---------------------------------------
    def _model_request(
        self, request: ModelRequest, turn: _Turn | None, evaluation: Evaluation | None
    ) -> tuple[ModelRequest, HandOff | None]:
        model = request.model
        if not isinstance(model, ChatRefusalTokens):
            return request, None
        settings = dict(request.model_settings)
        tenant = turn.tenant if turn is not None else find_tenant(request.runtime)
        if tenant is not None:
            settings.setdefault("tenant_id", tenant)
        handoff = None
        if turn is not None and evaluation is not None and model.router.backend is self.router.backend:
            handoff = HandOff(evaluation, tuple(to_conversation(turn.decided)), self.router.backend)
            settings[HANDOFF_KEY] = handoff
        return request.override(model_settings=settings), handoff

    def _decided(self, decision: dict[str, Any], response: ModelResponse) -> ExtendedModelResponse:
        return ExtendedModelResponse(
            model_response=_with_decision(response, decision),
            command=Command(update={"refusal_decision": decision}),
        )

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        turn = self._turn(request)
        if turn is None:
            request, _ = self._model_request(request, None, None)
            return _with_decision(handler(request), request.state.get("refusal_decision"))
        evaluation = self._evaluate(turn)
        decision = evaluation.decision.to_dict()
        if evaluation.decision.action != "respond":
            return self._decided(decision, ModelResponse(result=[self._answer(evaluation, turn)]))
        request, handoff = self._model_request(request, turn, evaluation)
        try:
            return self._decided(decision, handler(request))
        finally:
            if handoff is not None:
                handoff.release()

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        turn = self._turn(request)
        if turn is None:
            request, _ = self._model_request(request, None, None)
            return _with_decision(await handler(request), request.state.get("refusal_decision"))
        evaluation = await asyncio.to_thread(self._evaluate, turn)
        decision = evaluation.decision.to_dict()
        if evaluation.decision.action != "respond":
            answer = await asyncio.to_thread(self._answer, evaluation, turn)
            return self._decided(decision, ModelResponse(result=[answer]))
        request, handoff = self._model_request(request, turn, evaluation)
        try:
            return self._decided(decision, await handler(request))
        finally:
            if handoff is not None:
                handoff.release()
