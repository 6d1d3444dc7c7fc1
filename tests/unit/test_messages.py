from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import ChatPromptValue

from rt_middleware import ChatMessage, InvalidInputError
from rt_middleware.messages import as_conversation
from rt_middleware.router import to_conversation
from rt_middleware.templating import render_pieces


def test_as_conversation_validates() -> None:
    assert as_conversation("hi") == [ChatMessage("user", "hi")]
    assert as_conversation([{"role": "user", "content": "x"}]) == [ChatMessage("user", "x")]
    for bad in ["", "   ", [], [{"role": "user", "content": 3}], [{"role": "robot", "content": "x"}],
                [{"role": "system", "content": "only a system line"}]]:
        with pytest.raises(InvalidInputError):
            as_conversation(bad)  # type: ignore[arg-type]


def test_langchain_inputs() -> None:
    msgs = [SystemMessage("be nice"), HumanMessage("hi"), AIMessage("hello"), ToolMessage("42", tool_call_id="1")]
    conv = to_conversation(msgs)
    assert [m.role for m in conv] == ["system", "user", "assistant", "user"]
    assert to_conversation(ChatPromptValue(messages=[HumanMessage("yo")])) == [ChatMessage("user", "yo")]
    assert to_conversation([("human", "tuple form")]) == [ChatMessage("user", "tuple form")]


def test_our_refusal_in_history_reads_as_text() -> None:
    refusal = AIMessage(content=[{"type": "text", "text": "No."}, {"type": "refusal", "refusal": "No."}])
    assert to_conversation([HumanMessage("a"), refusal, HumanMessage("b")])[1] == ChatMessage("assistant", "No.")


def test_non_text_content_is_rejected() -> None:
    image = HumanMessage(content=[{"type": "image", "url": "http://x/y.png"}])
    with pytest.raises(InvalidInputError, match="image"):
        to_conversation([image])
    with pytest.raises(InvalidInputError, match="empty"):
        to_conversation([])


def test_render_pieces_separates_message_text() -> None:
    def render(messages: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}|" for m in messages) + "<assistant>"

    pieces = render_pieces(render, [ChatMessage("user", "[respond] hi")])
    assert pieces == [("<user>", False), ("[respond] hi", True), ("|<assistant>", False)]


def test_render_pieces_rejects_templates_that_drop_messages() -> None:
    from rt_middleware import ConfigError

    with pytest.raises(ConfigError, match="chat template"):
        render_pieces(lambda messages: "<assistant>", [ChatMessage("user", "x")])
