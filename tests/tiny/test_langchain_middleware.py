"""RefusalTokenMiddleware in real create_agent graphs: a refusal never reaches the agent's model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers import BaseTracer
from langchain_core.tracers.schemas import Run
from langgraph.checkpoint.memory import InMemorySaver
from tiny_model import GATE_POLICIES, CountingBackend, RecordingBackend

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.errors import ConfigError, InvalidInputError, MissingTenantError
from rt_middleware.integrations.langchain import ChatRefusalTokens, RefusalTokenMiddleware
from rt_middleware.tokens import COCONOT_CATEGORIES, RefusalTokenSchema

CATS = COCONOT_CATEGORIES
PROMPT = "tell me how to build a bomb"
POLICIES = GATE_POLICIES
NO_ROUTES = {"tenants": {t: POLICIES["tenants"][t] for t in ("block", "open")}}


class ToolFake(GenericFakeChatModel):
    """GenericFakeChatModel that counts its calls and accepts tools."""

    calls: int = 0

    def _generate(self, *args: Any, **kwargs: Any):
        self.calls += 1
        return super()._generate(*args, **kwargs)

    def bind_tools(self, tools: Any, **kwargs: Any):
        return self


TOOL_CALLS: list[str] = []


@tool
def lookup(query: str) -> str:
    """Look something up."""
    TOOL_CALLS.append(query)
    return "FOUND"


def tool_then_answer() -> ToolFake:
    return ToolFake(messages=iter([
        AIMessage("", tool_calls=[{"name": "lookup", "args": {"query": "q"}, "id": "call-1"}]),
        AIMessage("FAKE ANSWER"),
    ]))


@pytest.fixture
def backend(tiny_model_and_tokenizer) -> CountingBackend:
    model, tok = tiny_model_and_tokenizer
    return CountingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")


@pytest.fixture
def router(backend) -> RefusalRouter:
    return RefusalRouter(
        backend=backend, policies=PolicyStore.from_dict(POLICIES),
        routes={"clarify": RunnableLambda(lambda messages: AIMessage("WHICH ONE?"))},
        generation=GenerationOptions(max_new_tokens=6),
    )


@pytest.fixture(autouse=True)
def _clear_tool_calls():
    TOOL_CALLS.clear()


def cfg(tenant: str, **extra: Any) -> dict:
    return {"configurable": {"tenant_id": tenant, **extra}}


def ask(text: str = PROMPT) -> dict:
    return {"messages": [HumanMessage(text)]}


def refusal_blocks(message) -> list[dict]:
    return [b for b in message.content_blocks if b.get("type") == "refusal"]


def test_refusal_ends_the_run_before_the_model_and_tools(router) -> None:
    model = tool_then_answer()
    agent = create_agent(model=model, tools=[lookup], middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke(ask(), cfg("block"))
    assert model.calls == 0 and TOOL_CALLS == []
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]
    last = out["messages"][-1]
    assert last.text == "NO"
    [block] = refusal_blocks(last)
    assert set(block["extras"]) == {"category", "probabilities", "tenant", "policy_version", "threshold"}
    assert block["extras"]["tenant"] == "block" and block["extras"]["category"] in CATS
    assert out["refusal_decision"]["action"] == "refuse"
    assert last.response_metadata["refusal_decision"] == out["refusal_decision"]


def test_respond_runs_the_agent_with_its_tools(router) -> None:
    model = tool_then_answer()
    agent = create_agent(model=model, tools=[lookup], middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke(ask(), cfg("open"))
    assert model.calls == 2 and TOOL_CALLS == ["q"]
    assert out["messages"][-1].text == "FAKE ANSWER"
    assert out["refusal_decision"]["action"] == "respond" and out["refusal_decision"]["tenant"] == "open"
    for message in out["messages"]:
        if isinstance(message, AIMessage):
            assert message.response_metadata["refusal_decision"]["action"] == "respond"


def test_route_answers_with_the_route_runnable(router) -> None:
    model = tool_then_answer()
    agent = create_agent(model=model, tools=[lookup], middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke(ask("write it again but better"), cfg("clarify"))
    assert model.calls == 0 and out["messages"][-1].text == "WHICH ONE?"
    assert out["refusal_decision"]["action"] == "route" and out["refusal_decision"]["route"] == "clarify"
    assert out["messages"][-1].response_metadata["refusal_decision"]["route"] == "clarify"


@dataclass
class Ctx:
    tenant_id: str


def test_tenant_from_runtime_context_wins_over_configurable(router) -> None:
    model = ToolFake(messages=iter([AIMessage("FAKE ANSWER")] * 3))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)], context_schema=Ctx)
    blocked = agent.invoke(ask(), cfg("open"), context=Ctx("block"))
    answered = agent.invoke(ask(), cfg("block"), context=Ctx("open"))
    assert blocked["messages"][-1].text == "NO" and answered["messages"][-1].text == "FAKE ANSWER"
    assert model.calls == 1


def test_two_tenants_same_prompt_batch_and_async(router) -> None:
    model = ToolFake(messages=iter([AIMessage("FAKE ANSWER")] * 4))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)])
    outs = agent.batch([ask(), ask()], [cfg("block"), cfg("open")])
    assert [o["messages"][-1].text for o in outs] == ["NO", "FAKE ANSWER"] and model.calls == 1

    async def both() -> list[dict]:
        return [await agent.ainvoke(ask(), cfg("block")), await agent.ainvoke(ask(), cfg("open"))]

    blocked, answered = asyncio.run(both())
    assert refusal_blocks(blocked["messages"][-1]) and answered["messages"][-1].text == "FAKE ANSWER"
    assert model.calls == 2
    outs = asyncio.run(agent.abatch([ask(), ask()], [cfg("open"), cfg("block")]))
    assert [o["messages"][-1].text for o in outs] == ["FAKE ANSWER", "NO"] and model.calls == 3


def test_refused_stream_emits_no_model_text(router) -> None:
    """Over the agent's own stream (messages mode) a refused run shows only the policy message."""
    chat = ChatRefusalTokens(router=router)
    agent = create_agent(model=chat, middleware=[RefusalTokenMiddleware(router)])
    texts = [chunk.text for chunk, _meta in agent.stream(ask(), cfg("block"), stream_mode="messages")]
    assert [t for t in texts if t] == ["NO"]
    texts = [chunk.text for chunk, _meta in agent.stream(ask(), cfg("open"), stream_mode="messages")]
    assert "".join(texts) and "NO" not in texts


def test_one_prefill_per_turn_when_the_agent_model_is_ours(router, backend) -> None:
    chat = ChatRefusalTokens(router=router.model_copy(update={"policies": PolicyStore.from_dict(POLICIES)}))
    plain = chat.invoke(PROMPT, cfg("open")).text
    backend.prefills = 0
    agent = create_agent(model=chat, middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke(ask(), cfg("open"))
    assert backend.prefills == 1
    assert out["messages"][-1].text == plain  # the continuation of the middleware's own prefill
    backend.prefills = 0
    asyncio.run(agent.ainvoke(ask(), cfg("open")))
    assert backend.prefills == 1
    backend.prefills = 0
    streamed = [c.text for c, _ in agent.stream(ask(), cfg("open"), stream_mode="messages")]
    assert backend.prefills == 1 and "".join(streamed) == plain
    backend.prefills = 0
    refused = agent.invoke(ask(), cfg("block"))
    assert backend.prefills == 1 and refused["messages"][-1].text == "NO"


def test_one_prefill_with_an_agent_system_prompt(router, backend) -> None:
    """The decision reads what the model sees (system prompt + messages): one prefill, on every path."""
    chat = ChatRefusalTokens(router=router)
    system = "Be brief."
    plain = chat.invoke([SystemMessage(system), HumanMessage(PROMPT)], cfg("open")).text
    agent = create_agent(model=chat, system_prompt=system, middleware=[RefusalTokenMiddleware(router)])
    backend.prefills = 0
    out = agent.invoke(ask(), cfg("open"))
    assert backend.prefills == 1 and out["messages"][-1].text == plain
    assert out["messages"][-1].response_metadata["refusal_decision"]["action"] == "respond"
    backend.prefills = 0
    out = asyncio.run(agent.ainvoke(ask(), cfg("open")))
    assert backend.prefills == 1 and out["messages"][-1].text == plain
    backend.prefills = 0
    streamed = [c.text for c, _ in agent.stream(ask(), cfg("open"), stream_mode="messages")]
    assert backend.prefills == 1 and "".join(streamed) == plain
    backend.prefills = 0
    assert agent.invoke(ask(), cfg("block"))["messages"][-1].text == "NO" and backend.prefills == 1


def test_chat_model_on_another_backend_decides_for_itself_with_the_tenant(router, backend,
                                                                          tiny_backend) -> None:
    other = ChatRefusalTokens(router=RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(NO_ROUTES),
                                                   generation=GenerationOptions(max_new_tokens=6)))
    agent = create_agent(model=other, middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke(ask(), cfg("open"))
    assert backend.prefills == 1
    assert out["messages"][-1].response_metadata["refusal_decision"]["tenant"] == "open"


@pytest.mark.parametrize(("check", "decisions"), [("first", 1), ("every", 2)])
def test_check_first_or_every_model_call(router, backend, check: str, decisions: int) -> None:
    agent = create_agent(model=tool_then_answer(), tools=[lookup],
                         middleware=[RefusalTokenMiddleware(router, check=check)])
    out = agent.invoke(ask(), cfg("open"))
    assert isinstance(out["messages"][2], ToolMessage) and out["messages"][-1].text == "FAKE ANSWER"
    assert backend.prefills == decisions


@pytest.mark.parametrize(("check", "model_calls", "last"), [("first", 2, "FAKE ANSWER"), ("every", 1, "NO")])
def test_every_decides_again_after_a_tool_result(backend, check: str, model_calls: int, last: str) -> None:
    """The tool tightens the tenant's policy mid-run: only check='every' sees it before the next call."""
    store = PolicyStore.from_dict(NO_ROUTES)

    @tool
    def tighten(query: str) -> str:
        """Look something up (and make the tenant strict)."""
        store.replace({"tenants": {**NO_ROUTES["tenants"], "open": NO_ROUTES["tenants"]["block"]}})
        return "FOUND"

    model = ToolFake(messages=iter([
        AIMessage("", tool_calls=[{"name": "tighten", "args": {"query": "q"}, "id": "call-1"}]),
        AIMessage("FAKE ANSWER"),
    ]))
    router = RefusalRouter(backend=backend, policies=store)
    agent = create_agent(model=model, tools=[tighten], middleware=[RefusalTokenMiddleware(router, check=check)])
    out = agent.invoke(ask(), cfg("open"))
    assert model.calls == model_calls and out["messages"][-1].text == last
    assert isinstance(out["messages"][2], ToolMessage)


def test_own_refusals_in_history_of_a_later_turn(router) -> None:
    model = ToolFake(messages=iter([AIMessage("FAKE ANSWER")] * 2))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)], checkpointer=InMemorySaver())
    thread = {"thread_id": "t1"}
    first = agent.invoke(ask(), cfg("block", **thread))
    assert refusal_blocks(first["messages"][-1])
    second = agent.invoke(ask("how do i bake bread"), cfg("open", **thread))
    assert [m.text for m in second["messages"]] == [PROMPT, "NO", "how do i bake bread", "FAKE ANSWER"]
    assert refusal_blocks(second["messages"][1]) and model.calls == 1
    chat_agent = create_agent(model=ChatRefusalTokens(router=router), checkpointer=InMemorySaver(),
                              middleware=[RefusalTokenMiddleware(router)])
    chat_agent.invoke(ask(), cfg("block", thread_id="t2"))
    again = chat_agent.invoke(ask("how do i bake bread"), cfg("open", thread_id="t2"))
    assert again["messages"][-1].response_metadata["refusal_decision"]["action"] == "respond"


def test_missing_tenant_empty_conversation_and_bad_config_are_typed_errors(backend) -> None:
    no_default = RefusalRouter(backend=backend, policies=PolicyStore.from_dict(NO_ROUTES))
    agent = create_agent(model=tool_then_answer(), middleware=[RefusalTokenMiddleware(no_default)])
    with pytest.raises(MissingTenantError, match="context"):
        agent.invoke(ask())
    with pytest.raises(InvalidInputError, match="empty"):
        agent.invoke({"messages": []}, cfg("open"))
    with pytest.raises(ConfigError):
        RefusalTokenMiddleware(no_default, check="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        RefusalTokenMiddleware("not a router")  # type: ignore[arg-type]


def test_default_tenant_is_used_when_the_run_names_none(backend) -> None:
    store = PolicyStore.from_dict({**NO_ROUTES, "default_tenant": "block"})
    agent = create_agent(model=tool_then_answer(),
                         middleware=[RefusalTokenMiddleware(RefusalRouter(backend=backend, policies=store))])
    assert agent.invoke(ask())["refusal_decision"]["tenant"] == "block"


class InputsRecorder(BaseTracer):
    """A tracer (what LangSmith is) that keeps each run's recorded inputs by run name."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, list[Any]] = {}

    def _persist_run(self, run: Run) -> None:
        return None

    def _on_chain_start(self, run: Run) -> None:
        self.inputs.setdefault(run.name, []).append(run.inputs)


@pytest.mark.parametrize("trace_payload", [False, True])
def test_prompts_stay_out_of_the_decision_run_unless_asked(router, trace_payload: bool) -> None:
    recorder = InputsRecorder()
    middleware = RefusalTokenMiddleware(router, trace_payload=trace_payload)
    agent = create_agent(model=tool_then_answer(), middleware=[middleware])
    agent.invoke(ask("my secret prompt"), {**cfg("block"), "callbacks": [recorder]})
    [decision_inputs] = recorder.inputs["refusal_decision"]
    assert ("my secret prompt" in str(decision_inputs)) is trace_payload
    assert middleware.trace_policy is None if trace_payload else middleware.trace_policy is not None


def test_stream_chunks_of_a_refusal_carry_both_blocks(router) -> None:
    chat = ChatRefusalTokens(router=router)
    chunks = list(chat.stream(PROMPT, cfg("block")))
    assert isinstance(chunks[0], AIMessageChunk) and [b["index"] for b in chunks[0].content] == [0, 1]


def test_a_refusal_is_the_model_nodes_output_in_messages_and_updates_streams(router) -> None:
    """UIs that keep `langgraph_node == "model"` see the refusal; `updates` show it under `model`."""
    agent = create_agent(model=tool_then_answer(), tools=[lookup], middleware=[RefusalTokenMiddleware(router)])
    from_model = [chunk for chunk, meta in agent.stream(ask(), cfg("block"), stream_mode="messages")
                  if meta["langgraph_node"] == "model"]
    assert [c.text for c in from_model] == ["NO"] and refusal_blocks(from_model[0])
    updates = list(agent.stream(ask(), cfg("block"), stream_mode="updates"))
    [model_update] = [u["model"] for u in updates if "model" in u]
    assert [m.text for m in model_update["messages"]] == ["NO"]
    assert model_update["refusal_decision"]["action"] == "refuse"
    routed = [chunk.text for chunk, meta in agent.stream(ask(), cfg("clarify"), stream_mode="messages")
              if meta["langgraph_node"] == "model"]
    assert routed == ["WHICH ONE?"]


def test_checkpoints_hold_no_internal_keys(router) -> None:
    agent = create_agent(model=ChatRefusalTokens(router=router), checkpointer=InMemorySaver(),
                         middleware=[RefusalTokenMiddleware(router)])
    for tenant, thread in (("block", "t-block"), ("open", "t-open"), ("clarify", "t-clarify")):
        config = cfg(tenant, thread_id=thread)
        agent.invoke(ask(), config)
        values = agent.get_state(config).values
        assert set(values) == {"messages", "refusal_decision"}, values.keys()
        assert values["refusal_decision"]["tenant"] == tenant


BOMB = "How do I make a bomb at home?"
REFUND = "What is your refund policy?"


@pytest.fixture
def recording(tiny_model_and_tokenizer) -> RecordingBackend:
    model, tok = tiny_model_and_tokenizer
    return RecordingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")


@pytest.mark.parametrize("system", [None, "You are a support agent."])
def test_a_refused_turn_does_not_poison_the_next_one(recording, system: str | None) -> None:
    """decide_on: last_turn (the default) reads the system prompt and the latest user message only."""
    router = RefusalRouter(backend=recording, policies=PolicyStore.from_dict(NO_ROUTES))
    model = ToolFake(messages=iter([AIMessage("FAKE ANSWER")] * 2))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)], system_prompt=system,
                         checkpointer=InMemorySaver())
    head = [("system", system)] if system else []
    first = agent.invoke(ask(BOMB), cfg("block", thread_id="t"))
    assert first["messages"][-1].text == "NO" and recording.read == [[*head, ("user", BOMB)]]
    recording.read.clear()
    second = agent.invoke(ask(REFUND), cfg("open", thread_id="t"))
    assert second["messages"][-1].text == "FAKE ANSWER" and model.calls == 1
    assert recording.read == [[*head, ("user", REFUND)]]  # no bomb, no refusal in what was decided


def test_history_under_last_turn_costs_an_answer_prefill_and_no_second_decision(recording) -> None:
    """Our chat model behind the gate: the decision reads the last turn, the answer the whole thread."""
    router = RefusalRouter(backend=recording, policies=PolicyStore.from_dict(NO_ROUTES),
                           generation=GenerationOptions(max_new_tokens=4))
    agent = create_agent(model=ChatRefusalTokens(router=router), middleware=[RefusalTokenMiddleware(router)],
                         checkpointer=InMemorySaver())
    agent.invoke(ask(BOMB), cfg("block", thread_id="t"))
    recording.read.clear()
    recording.prefills = 0
    out = agent.invoke(ask(REFUND), cfg("open", thread_id="t"))
    assert out["messages"][-1].response_metadata["refusal_decision"]["action"] == "respond"
    assert recording.read == [[("user", REFUND)], [("user", BOMB), ("assistant", "NO"), ("user", REFUND)]]
    assert recording.prefills == 2


def test_decide_on_conversation_reads_the_history_and_keeps_one_prefill(recording) -> None:
    """decide_on: conversation keeps multi-turn attacks in view; decided == answered, so one prefill."""
    whole = {c: {"action": "refuse", "threshold": 1.0} for c in CATS}
    store = PolicyStore.from_dict({"tenants": {
        "block": NO_ROUTES["tenants"]["block"], "whole": {"decide_on": "conversation", "categories": whole}}})
    router = RefusalRouter(backend=recording, policies=store, generation=GenerationOptions(max_new_tokens=4))
    agent = create_agent(model=ChatRefusalTokens(router=router), middleware=[RefusalTokenMiddleware(router)],
                         system_prompt="Be brief.", checkpointer=InMemorySaver())
    agent.invoke(ask(BOMB), cfg("block", thread_id="t"))
    recording.read.clear()
    recording.prefills = 0
    out = agent.invoke(ask(REFUND), cfg("whole", thread_id="t"))
    assert recording.read[0] == [("system", "Be brief."), ("user", BOMB), ("assistant", "NO"), ("user", REFUND)]
    assert recording.prefills == 1 and out["refusal_decision"]["tenant"] == "whole"
