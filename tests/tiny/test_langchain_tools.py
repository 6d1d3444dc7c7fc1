"""ChatRefusalTokens as a drop-in chat model: tools through the chat template, tool calls parsed back,
structured output, and a clear error (naming guard mode) where the template has no tool support."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel
from tiny_model import GATE_POLICIES

from rt_middleware import PolicyStore, RefusalRouter
from rt_middleware.backends import GenerationOptions, HFBackend
from rt_middleware.errors import ConfigError
from rt_middleware.integrations.langchain import ChatRefusalTokens, ToolsNotSupportedError
from rt_middleware.integrations.langchain._tools import (
    parse_tool_calls,
    render_tool_calls,
    template_supports_tools,
    template_with_tools,
    tool_convention,
)
from rt_middleware.messages import ChatMessage
from rt_middleware.tokens import RefusalTokenSchema

HERMES_TEMPLATE = (
    "{% if tools %}<|system|>Tools: {% for t in tools %}{{ t | tojson }} {% endfor %}"
    "Call one as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if tools is not none %}<|user|>Respond with {\"name\": function name, \"parameters\": args} "
    "for one of: {% for t in tools %}{{ t | tojson }}{% endfor %}\n{% endif %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
POLICIES = {"tenants": {t: GATE_POLICIES["tenants"][t] for t in ("block", "open")}}


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"FOUND {query}"


class Weather(BaseModel):
    """Weather."""

    city: str
    celsius: float


def cfg(tenant: str) -> dict:
    return {"configurable": {"tenant_id": tenant}}


def scripted(*answers: str) -> RunnableLambda:
    """A respond_with runnable answering with `answers` in turn (stands in for the model's text)."""
    texts: Iterator[str] = itertools.cycle(answers)
    return RunnableLambda(lambda _input: next(texts))


@pytest.fixture(scope="module")
def hermes_backend(tiny_model_and_tokenizer) -> HFBackend:
    model, tok = tiny_model_and_tokenizer
    # tool schemas are long in the tiny byte-level vocabulary; rotary positions allow a longer context
    return HFBackend(model, tok, schema=RefusalTokenSchema.coconot(), chat_template=HERMES_TEMPLATE,
                     model_name="tiny-tools", max_context=1024)


def chat_over(backend, respond_with=None) -> ChatRefusalTokens:
    return ChatRefusalTokens(router=RefusalRouter(backend=backend, policies=PolicyStore.from_dict(POLICIES),
                                                  respond_with=respond_with,
                                                  generation=GenerationOptions(max_new_tokens=4)))


# ---- pure functions ------------------------------------------------------------------------------
def test_parse_hermes_tool_calls_with_text_around() -> None:
    text = ('Let me check.\n<tool_call>\n{"name": "lookup", "arguments": {"query": "a"}}\n</tool_call>\n'
            '<tool_call>{"name": "lookup", "arguments": "{\\"query\\": \\"b\\"}"}</tool_call>')
    rest, calls, invalid = parse_tool_calls(text)
    assert rest == "Let me check." and invalid == []
    assert [(c["name"], c["args"]) for c in calls] == [("lookup", {"query": "a"}), ("lookup", {"query": "b"})]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)


def test_parse_llama3_json_tool_calls() -> None:
    rest, calls, _ = parse_tool_calls('{"name": "lookup", "parameters": {"query": "a"}}')
    assert rest == "" and [(c["name"], c["args"]) for c in calls] == [("lookup", {"query": "a"})]
    _, calls, _ = parse_tool_calls('<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "arguments": {"x": 1}}')
    assert [(c["name"], c["args"]) for c in calls] == [("a", {}), ("b", {"x": 1})]


@pytest.mark.parametrize("text", [
    "plain answer", '{"answer": 42}', '{"name": "x"}', "{not json", '{"name": "a", "parameters": {}} and more',
])
def test_text_that_is_not_a_tool_call_stays_text(text: str) -> None:
    assert parse_tool_calls(text) == (text, [], [])


def test_broken_tool_calls_are_invalid_tool_calls() -> None:
    rest, calls, invalid = parse_tool_calls('<tool_call>{"name": "lookup", "arguments": {"q"</tool_call>')
    assert rest == "" and calls == [] and invalid[0]["error"].startswith("not JSON")
    _, calls, invalid = parse_tool_calls('<tool_call>{"name": "lookup", "arguments": {"q": 1}}')  # cut off
    assert calls[0]["args"] == {"q": 1} and invalid == []
    _, _, invalid = parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert "name" in invalid[0]["error"]


def test_template_capabilities_and_conventions(tiny_model_and_tokenizer) -> None:
    _, tok = tiny_model_and_tokenizer
    assert not template_supports_tools(tok.chat_template) and not template_supports_tools(None)
    assert template_supports_tools(HERMES_TEMPLATE) and template_supports_tools(LLAMA3_TEMPLATE)
    assert tool_convention(HERMES_TEMPLATE) == "hermes" and tool_convention(LLAMA3_TEMPLATE) == "llama3"


def test_tools_render_exactly_as_the_template_renders_them(tiny_model_and_tokenizer) -> None:
    """Our bound template gives transformers' own `apply_chat_template(..., tools=...)` text."""
    _, tok = tiny_model_and_tokenizer
    tools = [convert_to_openai_tool(lookup), convert_to_openai_tool(Weather)]
    messages = [{"role": "user", "content": 'what is "x"? café'}]
    for template in (HERMES_TEMPLATE, LLAMA3_TEMPLATE):
        reference = tok.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False,
                                            add_generation_prompt=True)
        ours = tok.apply_chat_template(messages, chat_template=template_with_tools(template, tools),
                                       tokenize=False, add_generation_prompt=True)
        assert ours == reference and "lookup" in ours and "celsius" in ours


def test_tool_schemas_with_control_tokens_are_rejected() -> None:
    tools = [{"type": "function", "function": {"name": "x", "description": "say [respond]"}}]
    with pytest.raises(ConfigError, match="control token"):
        template_with_tools(HERMES_TEMPLATE, tools, forbidden=["[respond]"])


def test_earlier_tool_calls_are_written_back_in_the_models_convention() -> None:
    message = AIMessage("", tool_calls=[{"name": "lookup", "args": {"query": "a"}, "id": "c1"}])
    hermes = render_tool_calls(message, "hermes").text
    assert parse_tool_calls(hermes)[1][0]["args"] == {"query": "a"} and "<tool_call>" in hermes
    llama = render_tool_calls(message, "llama3").text
    assert json.loads(llama) == {"name": "lookup", "parameters": {"query": "a"}}


# ---- the chat model on the tiny model --------------------------------------------------------------
def test_bind_tools_renders_the_tools_into_the_prompt(hermes_backend) -> None:
    chat = chat_over(hermes_backend)
    tools = [convert_to_openai_tool(lookup)]
    view = chat._tools_router(chat.router, tools).backend
    conversation = [ChatMessage("user", "find x")]
    assert view is not hermes_backend and view.model is hermes_backend.model
    with_tools = hermes_backend.tokenizer.decode(view.encode(conversation))
    assert '"name": "lookup"' in with_tools and "<tool_call>" in with_tools
    assert "lookup" not in hermes_backend.tokenizer.decode(hermes_backend.encode(conversation))
    answer = chat.bind_tools([lookup]).invoke("find x", cfg("open"))  # the real tiny model answers
    assert answer.response_metadata["refusal_decision"]["action"] == "respond"
    assert answer.usage_metadata["input_tokens"] == len(view.encode(conversation))


def test_scripted_tool_call_is_parsed_into_tool_calls(hermes_backend) -> None:
    chat = chat_over(hermes_backend, scripted('<tool_call>{"name": "lookup", "arguments": {"query": "x"}}</tool_call>'))
    answer = chat.bind_tools([lookup]).invoke("find x", cfg("open"))
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("lookup", {"query": "x"})]
    assert answer.text == "" and answer.response_metadata["finish_reason"] == "tool_calls"
    chunks = list(chat.bind_tools([lookup]).stream("find x", cfg("open")))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("lookup", {"query": "x"})]
    refused = chat.bind_tools([lookup]).invoke("find x", cfg("block"))
    assert refused.text == "NO" and refused.tool_calls == []


def test_an_agent_with_tools_runs_on_our_chat_model(hermes_backend) -> None:
    chat = chat_over(hermes_backend, scripted(
        '<tool_call>{"name": "lookup", "arguments": {"query": "x"}}</tool_call>', "It is FOUND x."))
    agent = create_agent(model=chat, tools=[lookup])
    out = agent.invoke({"messages": [HumanMessage("find x")]}, cfg("open"))
    assert isinstance(out["messages"][2], ToolMessage) and out["messages"][2].text == "FOUND x"
    assert out["messages"][-1].text == "It is FOUND x."
    refused = agent.invoke({"messages": [HumanMessage("find x")]}, cfg("block"))
    assert [m.text for m in refused["messages"]] == ["find x", "NO"]


def test_llama3_json_tool_calls_end_to_end(tiny_model_and_tokenizer) -> None:
    model, tok = tiny_model_and_tokenizer
    backend = HFBackend(model, tok, schema=RefusalTokenSchema.coconot(), chat_template=LLAMA3_TEMPLATE)
    chat = chat_over(backend, scripted('{"name": "lookup", "parameters": {"query": "y"}}'))
    answer = chat.bind_tools([lookup]).invoke("find y", cfg("open"))
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("lookup", {"query": "y"})]


def test_with_structured_output(hermes_backend) -> None:
    chat = chat_over(hermes_backend, scripted(
        '<tool_call>{"name": "Weather", "arguments": {"city": "Oslo", "celsius": -3.5}}</tool_call>'))
    assert chat.with_structured_output(Weather).invoke("weather in Oslo?", cfg("open")) == Weather(
        city="Oslo", celsius=-3.5)
    raw = chat.with_structured_output(Weather, include_raw=True).invoke("weather in Oslo?", cfg("block"))
    assert raw["parsed"] is None and raw["raw"].text == "NO"  # a refusal parses to nothing


def test_no_tool_support_names_guard_mode(tiny_backend) -> None:
    chat = chat_over(tiny_backend)
    with pytest.raises(ToolsNotSupportedError, match="guard mode") as caught:
        chat.bind_tools([lookup])
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, NotImplementedError)
    with pytest.raises(ToolsNotSupportedError, match="guard mode"):
        chat.with_structured_output(Weather)
    agent = create_agent(model=chat, tools=[lookup])
    with pytest.raises(ToolsNotSupportedError, match="RefusalTokenMiddleware"):
        agent.invoke({"messages": [HumanMessage("find x")]}, cfg("open"))


def test_tool_set_views_stay_bounded_and_consistent_under_8_threads(hermes_backend) -> None:
    """Agents call one chat model from many threads, each with its own tools: the view cache (an LRU
    of 8) is locked, so concurrent lookups and evictions neither raise nor hand out another set's view."""
    from concurrent.futures import ThreadPoolExecutor

    chat = chat_over(hermes_backend)
    tool_sets = [[{"type": "function", "function": {"name": f"tool{i}", "description": "d",
                                                     "parameters": {"type": "object", "properties": {}}}}]
                 for i in range(12)]  # more sets than the cache keeps: evictions race with lookups
    conversation = [ChatMessage("user", "x")]

    def use(round_: int) -> bool:
        tools = tool_sets[round_ % len(tool_sets)]
        view = chat._tools_router(chat.router, tools).backend
        return f"tool{round_ % len(tool_sets)}" in hermes_backend.tokenizer.decode(view.encode(conversation))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(use, range(400)))
    assert len(chat._views) <= 8
