"""The backend protocol: one prefill gives the decision distribution and a KV cache to continue.

A backend subclass implements five small methods (`encode`, `_prefill_ids`,
`_distributions_ids`, `_stream_ids`, and the `tokens`/`max_context`/`model_name` attributes);
everything else (validation, length checks, batching, stop strings, async twins) lives here once.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rt_middleware.distribution import FirstTokenDistribution, check_sampling
from rt_middleware.errors import PromptTooLongError, RTError
from rt_middleware.messages import ChatMessage, Conversation, as_conversation
from rt_middleware.tokens import RESPOND, RefusalTokenSchema, ResolvedTokens

__all__ = ["BaseBackend", "GenerationOptions", "Prefill"]


@dataclass(frozen=True)
class GenerationOptions:
    """How the continuation after the decision token is generated (greedy by default)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass
class Prefill:
    """The result of one prefill: the decision distribution and the backend state to continue from."""

    distribution: FirstTokenDistribution
    input_ids: list[int]
    state: Any = field(default=None, repr=False)
    """Backend-specific (a KV cache); consumed by the first continuation."""
    consumed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_state(self) -> Any:
        with self.lock:
            if self.consumed:
                raise RTError("this Prefill was already continued once; prefill again to continue anew")
            self.consumed = True
            state, self.state = self.state, None
            return state


def _stop_at(chunks: Iterator[str], stops: Sequence[str]) -> Iterator[str]:
    """Cut a text stream at the first stop string, holding back text that may start one."""
    if not stops:
        yield from chunks
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        cut = min((i for i in (buffer.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            if buffer[:cut]:
                yield buffer[:cut]
            return
        safe = len(buffer) - hold
        if safe > 0:
            yield buffer[:safe]
            buffer = buffer[safe:]
    if buffer:
        yield buffer


class BaseBackend(ABC):
    """Shared sugar over a model that exposes raw first-step logits and a reusable KV cache."""

    tokens: ResolvedTokens
    model_name: str = "unknown"
    max_context: int | None = None

    # ---- to implement -------------------------------------------------------------------
    @abstractmethod
    def encode(self, conversation: Conversation) -> list[int]:
        """Render the chat template and tokenize it; user text can never yield a decision id."""

    @abstractmethod
    def _prefill_ids(
        self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]
    ) -> Prefill: ...

    @abstractmethod
    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]: ...

    @abstractmethod
    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        """Yield text decoded after feeding `token_id` on top of the prefill's cache."""

    # ---- shared ---------------------------------------------------------------------------
    @property
    def schema(self) -> RefusalTokenSchema:
        return self.tokens.schema

    def _checked_ids(self, conversation: str | Sequence[ChatMessage | Mapping[str, str]]) -> list[int]:
        ids = self.encode(as_conversation(conversation))
        if self.max_context is not None and len(ids) + 1 > self.max_context:
            raise PromptTooLongError(
                f"the prompt is {len(ids)} tokens; with the decision token it exceeds the model's "
                f"context of {self.max_context} tokens",
                n_tokens=len(ids),
                max_tokens=self.max_context,
            )
        return ids

    def prefill(
        self,
        conversation: str | Sequence[ChatMessage | Mapping[str, str]],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
    ) -> Prefill:
        """One forward pass: the decision distribution plus the cache a continuation reuses."""
        bias = dict(logit_bias or {})
        check_sampling(self.tokens, temperature, bias)
        return self._prefill_ids(self._checked_ids(conversation), temperature, bias)

    def first_token_distribution(
        self,
        conversation: str | Sequence[ChatMessage | Mapping[str, str]],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
    ) -> FirstTokenDistribution:
        return self.first_token_distributions(
            [conversation], temperature=temperature, logit_bias=logit_bias
        )[0]

    def first_token_distributions(
        self,
        conversations: Sequence[str | Sequence[ChatMessage | Mapping[str, str]]],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[FirstTokenDistribution]:
        """Distributions for many prompts, in batches (left-padded where the backend batches)."""
        bias = dict(logit_bias or {})
        check_sampling(self.tokens, temperature, bias)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = [self._checked_ids(c) for c in conversations]
        # batches of similar lengths waste less compute on padding; results return in input order
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[FirstTokenDistribution | None] = [None] * len(encoded)
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="first-token distributions", unit="batch")
        for start in starts:
            chunk = order[start : start + batch_size]
            dists = self._distributions_ids([encoded[i] for i in chunk], temperature, bias)
            for i, dist in zip(chunk, dists, strict=True):
                out[i] = dist
        return out  # type: ignore[return-value]

    def stream(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        """Continue after forcing decision `token` (a decision name), reusing the prefill's cache."""
        options = options or GenerationOptions()
        token_id = self.tokens.id_for(token)
        return _stop_at(self._stream_ids(prefill, token_id, options), options.stop)

    def generate(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> str:
        return "".join(self.stream(prefill, token, options))

    # ---- async twins: run in a worker thread so the event loop never blocks -------------------
    async def aprefill(self, conversation: Any, **kwargs: Any) -> Prefill:
        return await asyncio.to_thread(self.prefill, conversation, **kwargs)

    async def afirst_token_distributions(self, conversations: Any, **kwargs: Any) -> list[FirstTokenDistribution]:
        return await asyncio.to_thread(self.first_token_distributions, conversations, **kwargs)

    async def agenerate(self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None) -> str:
        return await asyncio.to_thread(self.generate, prefill, token, options)

    async def astream(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> AsyncIterator[str]:
        iterator = self.stream(prefill, token, options)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, iterator, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]
