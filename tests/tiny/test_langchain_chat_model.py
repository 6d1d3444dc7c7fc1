"""ChatRefusalTokens on the tiny model: the gate closes before the first chunk, on every entry point."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware, ModelRefusalMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from tiny_model import GATE_POLICIES, CountingBackend, RecordingBackend

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.errors import InvalidInputError, MissingTenantError
from rt_middleware.integrations.langchain import ChatRefusalTokens
from rt_middleware.messages import ChatMessage
from rt_middleware.tokens import COCONOT_CATEGORIES, RefusalTokenSchema

CATS = COCONOT_CATEGORIES
PROMPT = "tell me how to build a bomb"
POLICIES = GATE_POLICIES


@pytest.fixture(scope="module")
def backend(tiny_model_and_tokenizer) -> CountingBackend:
    model, tok = tiny_model_and_tokenizer
    return CountingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")


@pytest.fixture(scope="module")
def router(backend) -> RefusalRouter:
    return RefusalRouter(
        backend=backend, policies=PolicyStore.from_dict(POLICIES),
        routes={"clarify": RunnableLambda(lambda messages: AIMessage("WHICH ONE?"))},
        generation=GenerationOptions(max_new_tokens=8),
    )


@pytest.fixture
def chat(router) -> ChatRefusalTokens:
    return ChatRefusalTokens(router=router)


def cfg(tenant: str) -> dict:
    return {"configurable": {"tenant_id": tenant}}


def refusal_blocks(message) -> list[dict]:
    return [b for b in message.content_blocks if b.get("type") == "refusal"]


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def test_invoke_refusal_is_a_standard_block_that_survives_serialization(chat) -> None:
    message = chat.invoke(PROMPT, cfg("block"))
    assert isinstance(message, AIMessage) and message.text == "NO"
    [block] = refusal_blocks(message)
    assert block["refusal"] == "NO"
    assert set(block["extras"]) == {"category", "probabilities", "tenant", "policy_version", "threshold"}
    assert block["extras"]["tenant"] == "block" and block["extras"]["threshold"] == 0.0
    assert message.response_metadata["refusal_decision"]["action"] == "refuse"
    back = loads(dumps(message), allowed_objects="all")
    assert refusal_blocks(back) == [block] and back.text == "NO"


def test_invoke_respond_continues_one_prefill(chat, backend) -> None:
    backend.prefills = 0
    message = chat.invoke(PROMPT, cfg("open"))
    assert backend.prefills == 1
    assert message.text and not refusal_blocks(message)
    assert message.response_metadata["refusal_decision"]["action"] == "respond"


def test_route_answers_with_the_route(chat) -> None:
    assert chat.invoke(PROMPT, cfg("clarify")).text == "WHICH ONE?"


HANDOFF = {"name": "handoff", "args": {"to": "human"}, "id": "c1", "type": "tool_call"}
CALLER = {"configurable": {"tenant_id": "clarify", "ticket": 42}, "tags": ["desk"], "metadata": {"channel": "web"}}


def handing_off(backend: CountingBackend, seen: list[RunnableConfig]) -> ChatRefusalTokens:
    """A chat model whose `clarify` route records its config and answers with a tool call."""

    def hand_off(messages: Any, config: RunnableConfig) -> AIMessage:
        seen.append(config)
        return AIMessage("HANDED OFF", tool_calls=[HANDOFF], response_metadata={"model_name": "human-desk"})

    router = RefusalRouter(backend=backend, policies=PolicyStore.from_dict(POLICIES),
                           routes={"clarify": RunnableLambda(hand_off)})
    return ChatRefusalTokens(router=router)


def every_entry_point(chat: ChatRefusalTokens, config: dict) -> list[AIMessage]:
    """invoke, stream, ainvoke and astream (streams merged)."""

    async def run() -> list[AIMessage]:
        return [await chat.ainvoke(PROMPT, config), merged([c async for c in chat.astream(PROMPT, config)])]

    return [chat.invoke(PROMPT, config), merged(list(chat.stream(PROMPT, config))), *asyncio.run(run())]


def test_a_route_gets_the_callers_config_on_every_entry_point(backend) -> None:
    """As through `RefusalRouter.invoke`: configurable, tags and metadata of the call."""
    seen: list[RunnableConfig] = []
    every_entry_point(handing_off(backend, seen), CALLER)
    assert len(seen) == 4
    for route_config in seen:
        assert route_config["configurable"] == CALLER["configurable"]
        assert route_config["tags"] == ["desk"] and route_config["metadata"]["channel"] == "web"


def test_a_routed_answer_keeps_its_tool_calls_and_model_name(backend) -> None:
    for answer in every_entry_point(handing_off(backend, []), cfg("clarify")):
        assert answer.text == "HANDED OFF" and answer.tool_calls == [HANDOFF]
        assert answer.response_metadata["model_name"] == "human-desk"


def test_refused_stream_is_one_chunk_with_no_model_text(chat) -> None:
    chunks = list(chat.stream(PROMPT, cfg("block")))
    assert [c.text for c in chunks if c.text] == ["NO"]
    first = chunks[0]
    assert refusal_blocks(first) and [b["index"] for b in first.content] == [0, 1]
    total = merged(chunks)
    assert total.text == "NO" and refusal_blocks(total)[0]["extras"]["tenant"] == "block"


def test_responded_stream_equals_invoke(chat) -> None:
    chunks = list(chat.stream(PROMPT, cfg("open")))
    assert "".join(c.text for c in chunks) == chat.invoke(PROMPT, cfg("open")).text
    assert merged(chunks).response_metadata["refusal_decision"]["action"] == "respond"


def test_async_paths(chat) -> None:
    async def run() -> tuple[Any, ...]:
        refused = [c async for c in chat.astream(PROMPT, cfg("block"))]
        answered = [c async for c in chat.astream(PROMPT, cfg("open"))]
        return refused, answered, await chat.ainvoke(PROMPT, cfg("block")), await chat.abatch(
            [PROMPT, PROMPT], [cfg("open"), cfg("block")])

    refused, answered, invoked, batched = asyncio.run(run())
    assert [c.text for c in refused if c.text] == ["NO"] and refusal_blocks(merged(refused))
    assert "".join(c.text for c in answered) == chat.invoke(PROMPT, cfg("open")).text
    assert invoked.text == "NO" and refusal_blocks(invoked)
    assert not refusal_blocks(batched[0]) and batched[1].text == "NO"


def test_batch_two_tenants_same_prompt(chat) -> None:
    answered, refused = chat.batch([PROMPT, PROMPT], [cfg("open"), cfg("block")])
    assert not refusal_blocks(answered) and refused.text == "NO"


def test_tenant_precedence(router) -> None:
    chat = ChatRefusalTokens(router=router, tenant_id="block")
    assert chat.invoke(PROMPT).text == "NO"  # the field
    assert not refusal_blocks(chat.invoke(PROMPT, cfg("open")))  # config beats the field
    assert chat.invoke(PROMPT, cfg("open"), tenant_id="block").text == "NO"  # the call argument beats both
    assert chat.bind(tenant_id="block").invoke(PROMPT, cfg("open")).text == "NO"
    with pytest.raises(MissingTenantError):
        ChatRefusalTokens(router=router).invoke(PROMPT)


def test_inside_a_run_the_config_is_read_from_the_context(chat) -> None:
    """What create_agent does: the model is invoked without a config inside a configured run."""
    inner = RunnableLambda(lambda text: chat.invoke(text))
    assert inner.invoke(PROMPT, cfg("block")).text == "NO"
    assert not refusal_blocks(inner.invoke(PROMPT, cfg("open")))


def test_own_refusal_in_history_is_read_back(chat) -> None:
    refusal = chat.invoke(PROMPT, cfg("block"))
    follow_up = [SystemMessage("be nice"), HumanMessage(PROMPT), refusal, HumanMessage("how do i bake bread")]
    assert not refusal_blocks(chat.invoke(follow_up, cfg("open")))
    assert chat.invoke(follow_up, cfg("block")).text == "NO"


def test_generation_settings_reach_the_continuation(router) -> None:
    """(The tiny model ends its answers within a token or two, so the options are checked, not text.)"""
    plain = ChatRefusalTokens(router=router)
    assert plain._acting_router(None) is router
    tuned = ChatRefusalTokens(router=router, max_tokens=3, temperature=0.5, stop=["\n"])
    generation = tuned._acting_router(["END"]).generation
    assert (generation.max_new_tokens, generation.temperature, generation.stop) == (3, 0.5, ("END",))
    assert tuned._acting_router(None).generation.stop == ("\n",) and router.generation.stop == ()
    assert tuned.invoke(PROMPT, cfg("open"), stop=["END"]).response_metadata["refusal_decision"]


def test_empty_conversation_is_a_typed_error(chat) -> None:
    with pytest.raises(InvalidInputError):
        chat.invoke([], cfg("open"))
    with pytest.raises(InvalidInputError):
        list(chat.stream("", cfg("open")))


class CountingFake(GenericFakeChatModel):
    calls: int = 0

    def _generate(self, *args: Any, **kwargs: Any):
        self.calls += 1
        return super()._generate(*args, **kwargs)


def test_fallback_on_refusal_with_langchains_middlewares(chat) -> None:
    fallback = CountingFake(messages=iter([AIMessage("FALLBACK ANSWER")] * 2))
    agent = create_agent(model=chat, middleware=[ModelFallbackMiddleware(fallback), ModelRefusalMiddleware()])
    out = agent.invoke({"messages": [HumanMessage(PROMPT)]}, cfg("block"))
    assert out["messages"][-1].text == "FALLBACK ANSWER" and fallback.calls == 1
    out = agent.invoke({"messages": [HumanMessage(PROMPT)]}, cfg("open"))
    assert fallback.calls == 1 and out["messages"][-1].response_metadata["refusal_decision"]["action"] == "respond"


def test_agent_stream_of_a_refusing_chat_model_shows_no_model_text(chat) -> None:
    agent = create_agent(model=chat)
    chunks = [c for c, _ in agent.stream({"messages": [HumanMessage(PROMPT)]}, cfg("block"), stream_mode="messages")]
    assert [c.text for c in chunks if c.text] == ["NO"]
    assert any(refusal_blocks(c) for c in chunks)


def test_standard_tracing_params(chat) -> None:
    params = chat._get_ls_params(stop=["x"])
    assert params["ls_provider"] == "rt-middleware" and params["ls_model_name"] == "tiny"
    assert params["ls_stop"] == ["x"]


def test_decides_on_the_last_turn_and_answers_from_the_whole_thread(tiny_model_and_tokenizer) -> None:
    model, tok = tiny_model_and_tokenizer
    backend = RecordingBackend(model, tok, schema=RefusalTokenSchema.coconot(), model_name="tiny")
    open_only = {"tenants": {"open": POLICIES["tenants"]["open"]}}
    chat = ChatRefusalTokens(router=RefusalRouter(backend=backend, policies=PolicyStore.from_dict(open_only),
                                                  generation=GenerationOptions(max_new_tokens=4)))
    thread = [SystemMessage("be nice"), HumanMessage(PROMPT), AIMessage("NO"), HumanMessage("how do i bake bread")]
    answer = chat.invoke(thread, cfg("open"))
    decided, answered = backend.read[:2]
    assert decided == [("system", "be nice"), ("user", "how do i bake bread")]
    assert answered == [("system", "be nice"), ("user", PROMPT), ("assistant", "NO"), ("user", "how do i bake bread")]
    assert backend.prefills == 2 and answer.response_metadata["refusal_decision"]["action"] == "respond"
    assert answer.usage_metadata["input_tokens"] == len(backend.encode(to_chat(decided))) + len(
        backend.encode(to_chat(answered)))
    backend.read.clear()
    backend.prefills = 0
    single = chat.invoke(thread[:2], cfg("open"))  # a single turn: one prefill decides and answers
    assert backend.prefills == 1 and single.usage_metadata["input_tokens"] == len(backend.encode(to_chat(backend.read[0])))


def to_chat(pairs: list[tuple[str, str]]) -> list[ChatMessage]:
    return [ChatMessage(role, content) for role, content in pairs]  # type: ignore[arg-type]


def test_usage_and_finish_reason_on_every_path(chat, backend) -> None:
    refused = chat.invoke(PROMPT, cfg("block"))
    assert refused.usage_metadata["output_tokens"] == 0 and refused.response_metadata["finish_reason"] == "stop"
    assert refused.usage_metadata["input_tokens"] == len(backend.encode([ChatMessage("user", PROMPT)]))
    answered = chat.invoke(PROMPT, cfg("open"))
    usage = answered.usage_metadata
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert (usage["output_tokens"] > 0) is bool(answered.text)
    assert answered.response_metadata["finish_reason"] in ("stop", "length", "context")
    streamed = merged(list(chat.stream(PROMPT, cfg("open"))))
    assert streamed.usage_metadata == usage and streamed.response_metadata["finish_reason"]


def test_max_tokens_is_capped_by_the_tenant_not_replaced(backend) -> None:
    """min(max_tokens, the policy's max_new_tokens); sampled with one seed, so shorter answers are
    prefixes of longer ones (the tiny model's greedy answers end within a token or two)."""
    open_policy = POLICIES["tenants"]["open"]
    store = PolicyStore.from_dict({"tenants": {"open": open_policy, "capped": {**open_policy, "max_new_tokens": 3}}})
    router = RefusalRouter(backend=backend, policies=store,
                           generation=GenerationOptions(max_new_tokens=64, temperature=1.0, seed=0))

    def answer(tenant: str, max_tokens: int | None) -> AIMessage:
        return ChatRefusalTokens(router=router, max_tokens=max_tokens).invoke(PROMPT, cfg(tenant))

    full = answer("open", None)
    cases = {("open", 5): 5, ("capped", None): 3, ("capped", 10): 3, ("capped", 2): 2}
    for (tenant, max_tokens), limit in cases.items():
        cut = answer(tenant, max_tokens)
        assert full.text.startswith(cut.text) and len(cut.text) < len(full.text)
        assert cut.response_metadata["finish_reason"] == "length"
        assert cut.usage_metadata["output_tokens"] == limit
