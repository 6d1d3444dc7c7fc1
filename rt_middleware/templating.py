"""Chat-template rendering that keeps message text apart from template text.

Every message's content is replaced by a sentinel before rendering; the rendered string is split
at the sentinels so a backend can tokenize template pieces with special tokens allowed and message
text with them disabled: a user typing ``[respond]`` or ``<|im_start|>`` gets plain text ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rt_middleware.errors import ConfigError
from rt_middleware.messages import Conversation

__all__ = ["render_pieces"]

_SENTINEL = re.compile("\ue000(\\d+)\ue001")


def render_pieces(
    render: Callable[[list[dict[str, str]]], str], conversation: Conversation
) -> list[tuple[str, bool]]:
    """Render with `render(messages)`; return ``(text, is_message_text)`` pieces in order."""
    placeholders = [{"role": m.role, "content": f"\ue000{i}\ue001"} for i, m in enumerate(conversation)]
    rendered = render(placeholders)
    parts = _SENTINEL.split(rendered)
    order = [int(p) for p in parts[1::2]]
    if sorted(order) != list(range(len(conversation))):
        raise ConfigError(
            "the chat template drops, repeats or rewrites message text; cannot keep user text apart"
        )
    pieces: list[tuple[str, bool]] = []
    for i, part in enumerate(parts):
        text, is_message = (conversation[int(part)].content, True) if i % 2 else (part, False)
        if text:
            pieces.append((text, is_message))
    return pieces
