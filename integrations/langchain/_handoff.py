"""A decided turn, handed from the middleware to the agent's chat model for one model call.

The hand-off travels in that call's keyword arguments (``request.model_settings``), so it lives
exactly as long as the call: nothing is registered process-wide, and the middleware releases the
prefill's KV cache as soon as the call returns, used or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from rt_middleware.backends.base import BaseBackend
from rt_middleware.errors import RTError
from rt_middleware.messages import ChatMessage, decided_positions
from rt_middleware.router import Evaluation

__all__ = ["HANDOFF_KEY", "HandOff", "decided_messages"]

HANDOFF_KEY = "refusal_handoff"
"""The model call argument that carries a `HandOff` (kept out of the chat model's traced params)."""


def decided_messages(messages: Sequence[BaseMessage], decide_on: str) -> list[BaseMessage]:
    """The messages a decision reads, per a tenant policy's ``decide_on`` (`decided_positions`).

    A human message is the user's turn; a tool result is not.
    """
    messages = list(messages)
    turns = [
        ("system" if isinstance(m, SystemMessage) else "user" if isinstance(m, HumanMessage) else "other", False)
        for m in messages
    ]
    return [messages[i] for i in decided_positions(turns, decide_on)]


@dataclass(eq=False)
class HandOff:
    """A `respond` decision for one model call; its prefill is continued where it fits.

    ``evaluation.prefill`` is None where the decided text differs from what the model answers
    (history under ``decide_on: last_turn``): the model then prefills its own conversation for
    the answer, without deciding again.
    """

    evaluation: Evaluation
    conversation: tuple[ChatMessage, ...] = field(repr=False)
    """The conversation the decision read (no text in repr: hand-offs may reach trace metadata)."""
    backend: BaseBackend = field(repr=False)

    def fits(self, backend: BaseBackend, conversation: Sequence[ChatMessage]) -> bool:
        """True when continuing this prefill answers exactly `conversation` on `backend`."""
        return (
            self.evaluation.prefill is not None
            and not self.evaluation.prefill.consumed
            and self.backend is backend
            and self.conversation == tuple(conversation)
        )

    def release(self) -> None:
        """Drop the KV cache now (idempotent), used or not."""
        prefill = self.evaluation.prefill
        if prefill is not None and not prefill.consumed:
            with contextlib.suppress(RTError):  # a continuation took it between the check and here
                prefill.take_state()
