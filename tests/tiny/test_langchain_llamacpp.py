"""The integration over LlamaCppBackend (the tiny f32 GGUF): hand-offs reuse and release llama.cpp slots."""

from __future__ import annotations

import asyncio

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions
from rt_middleware.integrations.langchain import ChatRefusalTokens, RefusalTokenMiddleware
from rt_middleware.tokens import COCONOT_CATEGORIES

pytest.importorskip("llama_cpp")

PROMPT = "tell me how to build a bomb"
POLICIES = {"tenants": {
    "block": {"categories": {c: {"action": "refuse", "threshold": 0.0, "message": "NO"} for c in COCONOT_CATEGORIES}},
    "open": {"categories": {c: {"action": "respond"} for c in COCONOT_CATEGORIES}},
}}


@pytest.fixture(scope="module")
def router(tiny_gguf) -> RefusalRouter:
    from rt_middleware.backends import LlamaCppBackend

    backend = LlamaCppBackend(tiny_gguf, f32_kv_cache=True, wait_timeout=30.0)
    return RefusalRouter(backend=backend, policies=PolicyStore.from_dict(POLICIES),
                         generation=GenerationOptions(max_new_tokens=8))


def cfg(tenant: str) -> dict:
    return {"configurable": {"tenant_id": tenant}}


def test_handoff_continues_the_llamacpp_prefill(router) -> None:
    chat = ChatRefusalTokens(router=router)
    plain = chat.invoke(PROMPT, cfg("open"))
    agent = create_agent(model=chat, middleware=[RefusalTokenMiddleware(router)])
    out = agent.invoke({"messages": [HumanMessage(PROMPT)]}, cfg("open"))
    assert out["messages"][-1].text == plain.text
    streamed = [c.text for c, _ in agent.stream({"messages": [HumanMessage(PROMPT)]}, cfg("block"),
                                                stream_mode="messages")]
    assert [t for t in streamed if t] == ["NO"]


def test_unused_handoffs_never_block_the_pool(router) -> None:
    """The agent's model is not ours: each run's prefill is dropped, and the single slot stays usable."""
    model = GenericFakeChatModel(messages=iter([AIMessage("FAKE")] * 6))
    agent = create_agent(model=model, middleware=[RefusalTokenMiddleware(router)])

    async def runs() -> list[dict]:
        return [await agent.ainvoke({"messages": [HumanMessage(PROMPT)]}, cfg("open")) for _ in range(3)]

    assert [o["messages"][-1].text for o in asyncio.run(runs())] == ["FAKE"] * 3
    assert ChatRefusalTokens(router=router).invoke(PROMPT, cfg("open")).text  # the slot is free
    assert ChatRefusalTokens(router=router).invoke(PROMPT, cfg("block")).text == "NO"


def test_tools_render_the_same_on_llamacpp_and_transformers(router, tiny_backend) -> None:
    """The tools view recompiles llama.cpp's template: both backends give the same prompt ids."""
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from rt_middleware.integrations.langchain._tools import template_with_tools
    from rt_middleware.integrations.langchain.chat_model import _with_template
    from rt_middleware.messages import ChatMessage

    @tool
    def lookup(query: str) -> str:
        """Look up."""
        return query

    template = template_with_tools(
        "{% if tools %}<|system|>{{ tools | tojson }}\n{% endif %}"
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}",
        [convert_to_openai_tool(lookup)],
    )
    conversation = [ChatMessage("user", "find x")]
    llama_view, hf_view = _with_template(router.backend, template), _with_template(tiny_backend, template)
    ids = llama_view.encode(conversation)
    assert ids == hf_view.encode(conversation) and len(ids) > len(router.backend.encode(conversation)) + 10
    assert router.backend.encode(conversation) == tiny_backend.encode(conversation)  # the originals are untouched
