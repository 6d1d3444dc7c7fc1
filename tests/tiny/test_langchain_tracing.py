"""Every decision is a traced run named `refusal_decision`, seen by a real tracer (what LangSmith is)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers import BaseTracer
from langchain_core.tracers.schemas import Run
from tiny_model import GATE_POLICIES, CountingBackend

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.integrations.langchain import ChatRefusalTokens, RefusalTokenMiddleware
from rt_middleware.tokens import RefusalTokenSchema

PROMPT = "tell me how to build a bomb"
SECRET = "my secret prompt"
POLICIES = {"tenants": {t: GATE_POLICIES["tenants"][t] for t in ("block", "open")}, "version": "v7"}


class Recorder(BaseTracer):
    """Keeps every finished run."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        return None

    def _end_trace(self, run: Run) -> None:
        self.runs.append(run)
        super()._end_trace(run)

    def named(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.name == name]

    def by_id(self, run_id: Any) -> Run:
        return next(r for r in self.runs if r.id == run_id)


@pytest.fixture(scope="module")
def backend(tiny_model_and_tokenizer) -> CountingBackend:
    model, tok = tiny_model_and_tokenizer
    return CountingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")


@pytest.fixture(scope="module")
def router(backend) -> RefusalRouter:
    return RefusalRouter(backend=backend, policies=PolicyStore.from_dict(POLICIES),
                         generation=GenerationOptions(max_new_tokens=4))


def cfg(tenant: str, recorder: Recorder) -> dict:
    return {"configurable": {"tenant_id": tenant}, "callbacks": [recorder]}


def check_decision_run(run: Run, tenant: str, action: str) -> None:
    assert run.outputs is not None and run.outputs["action"] == action and run.outputs["tenant"] == tenant
    assert set(run.outputs) >= {"probabilities", "category", "policy_version", "threshold", "reason"}
    metadata = run.extra["metadata"]
    assert metadata["tenant"] == tenant and metadata["policy_version"] == "v7"


@pytest.mark.parametrize(("tenant", "action"), [("block", "refuse"), ("open", "respond")])
def test_router_decide_fires_callbacks(router, tenant: str, action: str) -> None:
    recorder = Recorder()
    decision = router.decide(PROMPT, config=cfg(tenant, recorder))
    [run] = recorder.named("refusal_decision")
    check_decision_run(run, tenant, action)
    assert run.outputs == decision.to_dict() and PROMPT in str(run.inputs)
    recorder = Recorder()
    asyncio.run(router.adecide(PROMPT, config=cfg(tenant, recorder)))
    check_decision_run(*recorder.named("refusal_decision"), tenant, action)


def test_router_invoke_nests_the_decision_under_its_run(router) -> None:
    recorder = Recorder()
    router.invoke(PROMPT, cfg("block", recorder))
    [decision] = recorder.named("refusal_decision")
    assert recorder.by_id(decision.parent_run_id).name == "RefusalRouter"
    recorder = Recorder()
    list(router.stream(PROMPT, cfg("open", recorder)))
    [decision] = recorder.named("refusal_decision")
    assert recorder.by_id(decision.parent_run_id).name == "RefusalRouter"


def test_no_callbacks_no_run_and_no_error(router) -> None:
    assert router.decide(PROMPT, tenant_id="block").action == "refuse"


def test_chat_model_decision_is_a_child_of_the_model_run(router) -> None:
    recorder = Recorder()
    ChatRefusalTokens(router=router).invoke(PROMPT, cfg("block", recorder))
    [decision] = recorder.named("refusal_decision")
    check_decision_run(decision, "block", "refuse")
    assert recorder.by_id(decision.parent_run_id).run_type == "llm"


@pytest.mark.parametrize(("tenant", "action"), [("block", "refuse"), ("open", "respond")])
def test_chat_model_streams_nest_the_decision_as_invoke_does(router, tenant: str, action: str) -> None:
    """langchain-core's `stream`/`astream` call `_stream` without the model run's manager."""
    chat = ChatRefusalTokens(router=router)

    async def astream(recorder: Recorder) -> None:
        async for _ in chat.astream(PROMPT, cfg(tenant, recorder)):
            pass

    invoked, streamed, astreamed = Recorder(), Recorder(), Recorder()
    chat.invoke(PROMPT, cfg(tenant, invoked))
    list(chat.stream(PROMPT, cfg(tenant, streamed)))
    asyncio.run(astream(astreamed))
    [expected] = invoked.named("refusal_decision")
    for recorder in (streamed, astreamed):
        [decision] = recorder.named("refusal_decision")
        check_decision_run(decision, tenant, action)
        assert recorder.by_id(decision.parent_run_id).run_type == "llm"
        assert decision.extra["metadata"] == expected.extra["metadata"]


def test_a_route_of_the_chat_model_is_traced_under_its_run(backend) -> None:
    routes = {"clarify": RunnableLambda(lambda messages: AIMessage("WHICH ONE?"), name="clarify_route")}
    store = PolicyStore.from_dict({"tenants": {"clarify": GATE_POLICIES["tenants"]["clarify"]}})
    chat = ChatRefusalTokens(router=RefusalRouter(backend=backend, policies=store, routes=routes))
    for call in (chat.invoke, lambda text, config: list(chat.stream(text, config))):
        recorder = Recorder()
        call(PROMPT, cfg("clarify", recorder))
        [route] = recorder.named("clarify_route")
        assert recorder.by_id(route.parent_run_id).run_type == "llm"


@pytest.mark.parametrize("trace_payload", [False, True])
def test_middleware_decision_run_and_what_trace_payload_hides(router, trace_payload: bool) -> None:
    """trace_payload=False keeps the prompt out of the middleware's decision run, and only there."""
    recorder = Recorder()
    model = GenericFakeChatModel(messages=iter([AIMessage("FAKE ANSWER")]))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router, trace_payload=trace_payload)])
    agent.invoke({"messages": [HumanMessage(SECRET)]}, cfg("open", recorder))
    [decision] = recorder.named("refusal_decision")
    check_decision_run(decision, "open", "respond")
    assert (SECRET in str(decision.inputs)) is trace_payload
    assert SECRET not in str(decision.outputs)
    # not hidden: the agent's root run and the chat model's run carry the conversation
    [root] = [r for r in recorder.runs if r.parent_run_id is None]
    assert SECRET in str(root.inputs)
    [llm] = [r for r in recorder.runs if r.run_type == "llm"]
    assert SECRET in str(llm.inputs)


def test_a_refused_agent_turn_is_traced_with_its_decision(router) -> None:
    recorder = Recorder()
    model = GenericFakeChatModel(messages=iter([AIMessage("FAKE ANSWER")]))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)])
    agent.invoke({"messages": [HumanMessage(PROMPT)]}, cfg("block", recorder))
    [decision] = recorder.named("refusal_decision")
    check_decision_run(decision, "block", "refuse")
    assert not [r for r in recorder.runs if r.run_type == "llm"]  # the model was never called


def test_the_hand_off_stays_out_of_the_chat_models_traced_params(router) -> None:
    """The decided turn travels in the model call's kwargs; tracers never see it."""
    recorder = Recorder()
    agent = create_agent(model=ChatRefusalTokens(router=router), middleware=[RefusalTokenMiddleware(router)])
    agent.invoke({"messages": [HumanMessage(SECRET)]}, cfg("open", recorder))
    [llm] = [r for r in recorder.runs if r.run_type == "llm"]
    assert "refusal_handoff" not in llm.extra["invocation_params"] and llm.extra["invocation_params"]["tenant_id"] == "open"
    assert "refusal_call_config" not in llm.extra["invocation_params"]
    assert "refusal_handoff" not in str(llm.extra.get("options")) and "HandOff" not in str(llm.extra)
