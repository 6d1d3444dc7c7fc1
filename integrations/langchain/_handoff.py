"""A keyed hand-off of a decided turn from the middleware to the agent's chat model.

The evaluation holds a KV cache, which cannot live in agent state (state is checkpointed), so the
state carries only an opaque key. Entries are claimed once; unclaimed ones are evicted oldest first.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from rt_middleware.backends.base import BaseBackend
from rt_middleware.messages import ChatMessage
from rt_middleware.router import Evaluation

__all__ = ["HANDOFFS", "HandOff", "HandOffs"]


@dataclass(frozen=True)
class HandOff:
    """A turn decided `respond` whose prefill a chat model over `backend` may continue."""

    evaluation: Evaluation
    conversation: tuple[ChatMessage, ...]
    backend: BaseBackend

    def fits(self, backend: BaseBackend, conversation: list[ChatMessage]) -> bool:
        """True when continuing this prefill answers exactly `conversation` on `backend`."""
        return self.backend is backend and self.conversation == tuple(conversation)

    def release(self) -> None:
        """Drop the KV cache now rather than whenever the entry is collected."""
        prefill = self.evaluation.prefill
        if prefill is not None and not prefill.consumed:
            prefill.take_state()


class HandOffs:
    """Thread-safe, bounded: a run that ends before its model call cannot leak caches forever."""

    def __init__(self, capacity: int = 32) -> None:
        self._entries: OrderedDict[str, HandOff] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def deposit(self, entry: HandOff) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._entries[key] = entry
            evicted = [self._entries.popitem(last=False)[1] for _ in range(len(self._entries) - self._capacity)]
        for old in evicted:
            old.release()
        return key

    def claim(self, key: str | None) -> HandOff | None:
        if key is None:
            return None
        with self._lock:
            return self._entries.pop(key, None)

    def discard(self, key: str | None) -> None:
        entry = self.claim(key)
        if entry is not None:
            entry.release()

    def __len__(self) -> int:
        return len(self._entries)


HANDOFFS = HandOffs()
"""Shared by every middleware and chat model in the process (keys are random, claimed once)."""
