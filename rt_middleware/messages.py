"""Framework-free chat messages: what backends render with their chat template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rt_middleware.errors import ConfigError, InvalidInputError

__all__ = [
    "ChatMessage",
    "Conversation",
    "DecideOn",
    "as_conversation",
    "check_text",
    "decided_positions",
    "messages_to_decide_on",
]

Role = Literal["system", "user", "assistant"]
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})

DecideOn = Literal["last_turn", "conversation"]
"""What a decision reads: ``last_turn`` = the system prompt(s) plus the latest user message;
``conversation`` = the whole history (keeps multi-turn attacks in view)."""
DECIDE_ON_MODES: tuple[str, ...] = ("last_turn", "conversation")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    from_tool: bool = False
    """A tool's result, shown to the model as user text; `last_turn` does not count it as the
    user's turn."""


Conversation = Sequence[ChatMessage]


def check_text(text: str, where: str = "the prompt") -> str:
    """Reject text that no tokenizer can encode: lone UTF-16 surrogates (``"\\ud800"``, which a JSON
    body's ``"\\ud800"`` escape decodes to, or a non-UTF-8 argv byte under surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where} contains a lone surrogate (U+{ord(text[exc.start]):04X} at character "
            f"{exc.start}); send valid UTF-8 / Unicode text"
        ) from None
    return text


def as_conversation(value: str | Sequence[ChatMessage | Mapping[str, str]]) -> list[ChatMessage]:
    """Validate a prompt (str) or a message list into a conversation with text in every message."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInputError("the prompt is empty")
        return [ChatMessage("user", check_text(value))]
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        raise InvalidInputError(
            f"cannot read a {type(value).__name__} as a conversation: give a str prompt or a list of "
            "messages ({'role': ..., 'content': ...} mappings or ChatMessage)"
        )
    if not value:
        raise InvalidInputError("the conversation is empty: give a prompt or at least one message")
    out: list[ChatMessage] = []
    for i, msg in enumerate(value):
        if isinstance(msg, ChatMessage):
            role, content, from_tool = msg.role, msg.content, msg.from_tool
        elif isinstance(msg, Mapping):
            role, content, from_tool = msg.get("role"), msg.get("content"), False
        else:
            role, content = getattr(msg, "role", None), getattr(msg, "content", None)
            from_tool = False
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidInputError(f"message {i}: role must be one of {sorted(_ROLES)}, got {role!r:.80}")
        if not isinstance(content, str):
            raise InvalidInputError(
                f"message {i}: content must be text, got {type(content).__name__}"
            )
        out.append(ChatMessage(role, check_text(content, f"message {i}"), bool(from_tool)))  # type: ignore[arg-type]
    if not any(m.content.strip() for m in out if m.role == "user"):
        raise InvalidInputError("the conversation has no user text to decide on")
    return out


def decided_positions(turns: Sequence[tuple[str, bool]], mode: DecideOn | str = "last_turn") -> list[int]:
    """Positions of the messages a decision reads, from each message's ``(role, from_tool)``.

    The one implementation of ``decide_on``: framework adapters (LangChain messages) call it with
    their own messages' roles, so every entry point selects the same turns.
    """
    if mode == "conversation":
        return list(range(len(turns)))
    if mode != "last_turn":
        raise ConfigError(f"decide_on must be one of {list(DECIDE_ON_MODES)}, got {mode!r:.80}")
    last_user = next(
        (i for i in range(len(turns) - 1, -1, -1) if turns[i][0] == "user" and not turns[i][1]),
        None,
    )
    if last_user is None:
        return list(range(len(turns)))
    return [i for i, (role, _) in enumerate(turns) if role == "system" or i == last_user]


def messages_to_decide_on(messages: Sequence[ChatMessage], mode: DecideOn | str = "last_turn") -> list[ChatMessage]:
    """The part of a conversation a decision reads, per a tenant's ``decide_on``.

    ``conversation``: every message. ``last_turn``: the system messages plus the latest user message
    that is not a tool result (in their original order); a conversation without such a message is
    returned whole. Pure: no model, no I/O; equal to the input exactly when one prefill can serve
    both the decision and the answer.
    """
    messages = list(messages)
    return [messages[i] for i in decided_positions([(m.role, m.from_tool) for m in messages], mode)]
