"""Framework-free chat messages: what backends render with their chat template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rt_middleware.errors import InvalidInputError

__all__ = ["ChatMessage", "Conversation", "as_conversation"]

Role = Literal["system", "user", "assistant"]
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


Conversation = Sequence[ChatMessage]


def as_conversation(value: str | Sequence[ChatMessage | Mapping[str, str]]) -> list[ChatMessage]:
    """Validate a prompt (str) or a message list into a conversation with text in every message."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInputError("the prompt is empty")
        return [ChatMessage("user", value)]
    if not isinstance(value, Sequence) or not value:
        raise InvalidInputError("the conversation is empty: give a prompt or at least one message")
    out: list[ChatMessage] = []
    for i, msg in enumerate(value):
        if isinstance(msg, Mapping):
            role, content = msg.get("role"), msg.get("content")
        else:
            role, content = getattr(msg, "role", None), getattr(msg, "content", None)
        if role not in _ROLES:
            raise InvalidInputError(f"message {i}: role must be one of {sorted(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise InvalidInputError(
                f"message {i}: content must be text, got {type(content).__name__}"
            )
        out.append(ChatMessage(role, content))  # type: ignore[arg-type]
    if not any(m.content.strip() for m in out if m.role == "user"):
        raise InvalidInputError("the conversation has no user text to decide on")
    return out
