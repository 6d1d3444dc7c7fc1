"""RefusalRouter end to end on the tiny HF backend: every action, every Runnable entry point."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableLambda
from tiny_model import PROMPTS

from rt_middleware import (
    InvalidInputError,
    MissingTenantError,
    PolicyError,
    PolicyStore,
    PromptTooLongError,
    RefusalRouter,
    UnknownTenantError,
)
from rt_middleware.backends import GenerationOptions, HFBackend
from rt_middleware.errors import BackendError
from rt_middleware.tokens import COCONOT_CATEGORIES

CATS = COCONOT_CATEGORIES
POLICIES = {
    "tenants": {
        "block": {"categories": {c: {"action": "refuse", "threshold": 0.0, "message": "NO"} for c in CATS}},
        "open": {"categories": {c: {"action": "refuse", "threshold": 1.0} for c in CATS}},
        "route": {"categories": {c: {"action": "route", "threshold": 0.0, "route": "human"} for c in CATS}},
    }
}


def refusal_blocks(message) -> list[Mapping]:
    return [b for b in message.content_blocks if b.get("type") == "refusal"]


@pytest.fixture(scope="module")
def router(tiny_backend) -> RefusalRouter:
    return RefusalRouter(
        backend=tiny_backend,
        policies=PolicyStore.from_dict(POLICIES),
        routes={"human": RunnableLambda(lambda x: AIMessage("ROUTED"))},
        generation=GenerationOptions(max_new_tokens=8),
    )


def cfg(tenant: str) -> dict:
    return {"configurable": {"tenant_id": tenant}}


def test_refuse_is_a_standard_refusal(router: RefusalRouter) -> None:
    out = router.invoke("tell me how to build a bomb", cfg("block"))
    assert out.text == "NO"
    [block] = refusal_blocks(out)
    assert block["refusal"] == "NO" and block["extras"]["tenant"] == "block"
    decision = out.response_metadata["refusal_decision"]
    assert decision["action"] == "refuse" and decision["category"] in CATS
    assert block["extras"]["probabilities"] == decision["probabilities"]


def test_route_and_respond(router: RefusalRouter) -> None:
    routed = router.invoke("hello world", cfg("route"))
    assert routed.text == "ROUTED" and routed.response_metadata["refusal_decision"]["route"] == "human"
    answered = router.invoke("hello world", cfg("open"))
    assert answered.response_metadata["refusal_decision"]["action"] == "respond"
    assert not refusal_blocks(answered)


def test_two_tenants_differ_on_the_same_prompt(router: RefusalRouter) -> None:
    actions = {t: router.decide("do you love me", tenant_id=t).action for t in ("block", "open", "route")}
    assert actions == {"block": "refuse", "open": "respond", "route": "route"}


def test_batch_with_per_item_tenants(router: RefusalRouter) -> None:
    tenants = ["block", "open", "route", "block"]
    outs = router.batch(PROMPTS[:4], [cfg(t) for t in tenants])
    got = [o.response_metadata["refusal_decision"]["tenant"] for o in outs]
    assert got == tenants
    assert [o.response_metadata["refusal_decision"]["action"] for o in outs] == [
        "refuse", "respond", "route", "refuse"
    ]


def test_batch_keeps_other_items_on_a_bad_one(router: RefusalRouter) -> None:
    outs = router.batch(["hello world", "hi"], [cfg("open"), cfg("nobody")], return_exceptions=True)
    assert isinstance(outs[0], AIMessage) and isinstance(outs[1], UnknownTenantError)


def test_stream_refusal_is_one_chunk_without_model_text(router: RefusalRouter) -> None:
    chunks = list(router.stream("tell me how to build a bomb", cfg("block")))
    assert len(chunks) == 1 and isinstance(chunks[0], AIMessageChunk)
    assert [b.get("index") for b in chunks[0].content] == [0, 1]
    assert refusal_blocks(chunks[0]) and chunks[0].text == "NO"


def test_stream_respond_equals_invoke(router: RefusalRouter) -> None:
    chunks = list(router.stream("hello world", cfg("open")))
    assert chunks[0].response_metadata["refusal_decision"]["action"] == "respond"
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    assert whole.text == router.invoke("hello world", cfg("open")).text


def test_stream_gives_a_routed_message_as_invoke_does(tiny_backend) -> None:
    """A route's whole message keeps its tool calls and its own model_name when streamed."""
    handed_off = AIMessage("ROUTED", tool_calls=[{"name": "handoff", "args": {"to": "human"}, "id": "c1"}],
                           response_metadata={"model_name": "human-desk"})
    router = RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(POLICIES),
                           routes={"human": RunnableLambda(lambda x: handed_off)})
    invoked = router.invoke("hello world", cfg("route"))
    whole, *rest = router.stream("hello world", cfg("route"))
    for chunk in rest:
        whole = whole + chunk
    assert invoked.tool_calls == whole.tool_calls == [{**handed_off.tool_calls[0], "type": "tool_call"}]
    assert invoked.response_metadata == whole.response_metadata
    assert whole.response_metadata["model_name"] == "human-desk" and whole.text == "ROUTED"


def test_async_paths(router: RefusalRouter) -> None:
    async def run():
        one = await router.ainvoke("tell me how to build a bomb", cfg("block"))
        many = await router.abatch(["hello world", "do you love me"], [cfg("open"), cfg("block")])
        chunks = [c async for c in router.astream("tell me how to build a bomb", cfg("block"))]
        decision = await router.adecide("hello world", tenant_id="open")
        return one, many, chunks, decision

    one, many, chunks, decision = asyncio.run(run())
    assert decision.action == "respond" and decision.tenant == "open"
    assert one.text == "NO"
    assert [m.response_metadata["refusal_decision"]["action"] for m in many] == ["respond", "refuse"]
    assert len(chunks) == 1 and refusal_blocks(chunks[0])


def test_messages_and_with_config(router: RefusalRouter) -> None:
    history = [HumanMessage("hi"), router.invoke("tell me how to build a bomb", cfg("block")), HumanMessage("and now?")]
    assert router.with_config(cfg("block")).invoke(history).text == "NO"


def test_respond_with_runnable(tiny_backend) -> None:
    router = RefusalRouter(
        backend=tiny_backend, policies=PolicyStore.from_dict({"tenants": {"open": POLICIES["tenants"]["open"]}}),
        respond_with=RunnableLambda(lambda x: "FROM CHAIN"),
    )
    out = router.invoke("hello world", cfg("open"))
    assert out.text == "FROM CHAIN" and out.response_metadata["refusal_decision"]["action"] == "respond"


def test_request_errors(router: RefusalRouter) -> None:
    with pytest.raises(UnknownTenantError):
        router.invoke("hello", cfg("nobody"))
    with pytest.raises(MissingTenantError):
        router.invoke("hello")
    with pytest.raises(InvalidInputError):
        router.invoke("", cfg("open"))
    with pytest.raises(InvalidInputError):
        router.invoke([], cfg("open"))
    with pytest.raises(InvalidInputError, match="image"):
        router.invoke([HumanMessage(content=[{"type": "image", "url": "http://x/y.png"}])], cfg("open"))
    with pytest.raises(PromptTooLongError):
        router.invoke("hello world " * 300, cfg("open"))


def test_construction_checks_policies_against_model_and_routes(tiny_backend) -> None:
    with pytest.raises(PolicyError, match="route"):
        RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(POLICIES))
    bad = {"tenants": {"t": {"categories": {"Typo": {"action": "refuse"}}}}}
    with pytest.raises(PolicyError, match="Typo"):
        RefusalRouter(backend=tiny_backend, policies=PolicyStore.from_dict(bad))


class BrokenBackend(HFBackend):
    """Fault injection: the model call fails the way a crashed runtime would."""

    def _prefill_ids(self, ids, temperature, logit_bias):
        raise BackendError("device lost")

    def _distributions_ids(self, batch, temperature, logit_bias):
        raise BackendError("device lost")


def test_fail_modes(tiny_model_and_tokenizer) -> None:
    model, tok = tiny_model_and_tokenizer
    store = PolicyStore.from_dict({"tenants": {"closed": {"refusal_message": "DOWN"}, "open": {"fail_mode": "open"}}})
    router = RefusalRouter(backend=BrokenBackend(model, tok), policies=store,
                           respond_with=RunnableLambda(lambda x: "FALLBACK"))
    closed = router.invoke("hello", cfg("closed"))
    assert closed.text == "DOWN" and closed.response_metadata["refusal_decision"]["reason"] == "backend_error"
    assert router.invoke("hello", cfg("open")).text == "FALLBACK"
    no_fallback = RefusalRouter(backend=BrokenBackend(model, tok), policies=store)
    with pytest.raises(BackendError, match="respond_with"):
        no_fallback.invoke("hello", cfg("open"))
