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


def test_messages_to_decide_on() -> None:
    from rt_middleware.messages import messages_to_decide_on

    sys_, u1, a1, u2 = (ChatMessage("system", "s"), ChatMessage("user", "one"), ChatMessage("assistant", "a"),
                        ChatMessage("user", "two"))
    tool = ChatMessage("user", "[tool result] 42", from_tool=True)
    history = [sys_, u1, a1, u2]
    assert messages_to_decide_on(history, "conversation") == history
    assert messages_to_decide_on(history) == [sys_, u2]  # default last_turn
    assert messages_to_decide_on([*history, a1, tool], "last_turn") == [sys_, u2]
    assert messages_to_decide_on([u1], "last_turn") == [u1]
    assert messages_to_decide_on([sys_, tool], "last_turn") == [sys_, tool]  # no user turn: whole
    single = [sys_, u1]
    assert messages_to_decide_on(single, "last_turn") == single  # one prefill serves both
    from rt_middleware.errors import ConfigError

    with pytest.raises(ConfigError, match="decide_on"):
        messages_to_decide_on(history, "everything")


def test_lone_surrogates_are_invalid_input() -> None:
    from rt_middleware.messages import check_text

    for bad in ("caf\ud800", "x\udce9", "\udfff"):
        with pytest.raises(InvalidInputError, match="surrogate"):
            as_conversation(bad)
        with pytest.raises(InvalidInputError, match="surrogate"):
            as_conversation([{"role": "user", "content": bad}])
        with pytest.raises(InvalidInputError, match="surrogate"):
            to_conversation([HumanMessage(bad)])
    assert check_text("café 😀 \x00\x07") == "café 😀 \x00\x07"  # control characters are text


def test_dict_input_says_what_is_accepted() -> None:
    with pytest.raises(InvalidInputError, match="list of messages"):
        as_conversation({"role": "user", "content": "hi"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="str prompt"):
        to_conversation({"messages": []})  # type: ignore[arg-type]
