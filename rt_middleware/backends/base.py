"""The backend protocol: one prefill gives the decision distribution and a KV cache to continue.

A backend subclass implements five small methods (`encode`, `_prefill_ids`,
`_distributions_ids`, `_stream_ids`, and the `tokens`/`max_context`/`model_name` attributes);
everything else (validation, length checks, batching, stop strings, deadlines, finish reasons,
async twins) lives here once. `_prefill_batch_ids` defaults to one `_prefill_ids` per prompt; a
backend that can run one padded forward for many prompts and give each its own cache overrides it.

`_stream_ids` is a generator of text chunks that RETURNS its `FinishReason` (``return "length"``);
`stream` wraps it in a `TextStream` whose ``finish_reason`` is set once the text ends.

Deadlines: ``timeout`` (seconds) on `prefill`/`first_token_distributions`, `GenerationOptions.timeout`
for a continuation, else the backend's `timeout` attribute. While a prefill runs, its deadline is
readable with `request_deadline()` (a context variable, so per thread and per asyncio task);
backends raise `BackendTimeoutError` once it has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Literal, TypeVar, overload

from rt_middleware.distribution import FirstTokenDistribution, check_sampling
from rt_middleware.errors import BackendError, BackendTimeoutError, ConfigError, PromptTooLongError, RTError
from rt_middleware.messages import ChatMessage, Conversation, as_conversation
from rt_middleware.tokens import RESPOND, RefusalTokenSchema, ResolvedTokens

__all__ = [
    "AsyncTextStream",
    "BaseBackend",
    "FinishReason",
    "Generation",
    "GenerationOptions",
    "Prefill",
    "TextStream",
    "ThreadedAsyncIterator",
    "check_deadline",
    "deadline_scope",
    "each_row",
    "fail_closed",
    "request_deadline",
]

_T = TypeVar("_T")
Prompt = str | Sequence[ChatMessage | Mapping[str, str]]
"""A prompt text (one user message) or a conversation."""

FinishReason = Literal["stop", "length", "context"]
"""Why a continuation ended: ``stop`` (end-of-turn token or a stop string), ``length``
(``max_new_tokens`` reached), ``context`` (the model's context window is full)."""

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("rt_middleware_deadline", default=None)


def request_deadline() -> float | None:
    """The running request's deadline on the `time.monotonic()` clock, or None."""
    return _DEADLINE.get()


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Make `deadline` the current request's deadline (in this thread / task) for the block."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_deadline(what: str = "the request") -> None:
    """Raise BackendTimeoutError if the current request's deadline has passed."""
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise BackendTimeoutError(f"{what} ran past its deadline")


@contextlib.contextmanager
def fail_closed(what: str) -> Iterator[None]:
    """Every failure of a backend's library becomes a BackendError (cause kept), so the tenant's fail
    mode applies whatever was raised (MemoryError, TypeError, KeyError, OSError, ...)."""
    try:
        yield
    except RTError:
        raise
    except Exception as exc:
        raise BackendError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _deadline_after(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}")
    return time.monotonic() + timeout


@dataclass(frozen=True)
class GenerationOptions:
    """How the continuation after the decision token is generated (greedy by default)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    """Sampling seed for this request alone (reproducible under concurrency); None: unseeded."""
    timeout: float | None = None
    """Seconds for the whole continuation; None uses the backend's `timeout`."""

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, Integral) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0 and 0 < self.top_p <= 1):
            raise ValueError(f"temperature must be finite and >= 0 and top_p in (0, 1], got {self.temperature!r}, "
                             f"{self.top_p!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {self.timeout}")


@dataclass(frozen=True)
class Generation:
    """A whole continuation: its text and why it ended."""

    text: str
    finish_reason: FinishReason | None
    """None only from a backend that does not report it."""


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


class TextStream(Iterator[str]):
    """The text chunks of one continuation, cut at the first stop string.

    `finish_reason` is None until the text has ended; then ``stop``, ``length`` or ``context``.
    Closing the stream early (or a stop string) ends the backend's generation too, and so does
    dropping it: the generator holds only `_StreamState`, not the stream, so no reference cycle
    waits for the garbage collector (which may run in any thread) while generation goes on.
    """

    def __init__(self, chunks: Iterator[str], stops: Sequence[str] = ()) -> None:
        self._state = _StreamState(chunks)
        self._it = _cut_at_stops(self._state, tuple(s for s in stops if s))

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._state.finish_reason

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        self._it.close()


class _StreamState:
    def __init__(self, chunks: Iterator[str]) -> None:
        self.chunks = chunks
        self.finish_reason: FinishReason | None = None

    def next_chunk(self) -> str | None:
        try:
            return next(self.chunks)
        except StopIteration as end:
            self.finish_reason = end.value
            return None


def _cut_at_stops(state: _StreamState, stops: tuple[str, ...]) -> Iterator[str]:
    try:
        if not stops:
            while (chunk := state.next_chunk()) is not None:
                yield chunk
            return
        hold = max(len(s) for s in stops) - 1  # text that may start a stop string
        buffer = ""
        while (chunk := state.next_chunk()) is not None:
            buffer += chunk
            cut = min((i for i in (buffer.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                state.finish_reason = "stop"
                if buffer[:cut]:
                    yield buffer[:cut]
                return
            safe = len(buffer) - hold
            if safe > 0:
                yield buffer[:safe]
                buffer = buffer[safe:]
        if buffer:
            yield buffer
    finally:  # a consumer that stops early (stop string, closed stream) ends generation too
        close = getattr(state.chunks, "close", None)
        if close is not None:
            close()


class ThreadedAsyncIterator(AsyncIterator[_T]):
    """A blocking iterator read from asyncio: each item is produced in a worker thread.

    A task cancelled while it waits for an item cannot stop that thread mid-item, so the pending
    item is kept and `aclose` waits for it (for a stream, one token) before closing the iterator:
    closing a generator still running in another thread fails ("generator already executing") and
    the work would go on unread.
    """

    _DONE = object()

    def __init__(self, iterator: Iterator[_T]) -> None:
        self._iterator = iterator
        self._pending: asyncio.Future[Any] | None = None

    def __aiter__(self) -> ThreadedAsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._pending is None:  # else a read cancelled earlier left it running: its item is next
            self._pending = asyncio.ensure_future(asyncio.to_thread(next, self._iterator, self._DONE))
        item = await asyncio.shield(self._pending)
        self._pending = None
        if item is self._DONE:
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # retrieved: an error in the abandoned item is not news
        close = getattr(self._iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


class AsyncTextStream(ThreadedAsyncIterator[str]):
    """`TextStream` for asyncio; `aclose()` (or cancelling the reading task, then `aclose()`) ends generation."""

    def __init__(self, stream: TextStream) -> None:
        super().__init__(stream)
        self._stream = stream

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._stream.finish_reason


def each_row(make: Callable[[int], _T], count: int) -> list[_T | BackendError]:
    """The rows of a batched result: a row whose own output is unusable (NaN logits from one prompt)
    becomes its BackendError instead of failing the whole batch, other tenants' requests included.
    A deadline is the batch's, so a timeout still ends it."""
    out: list[_T | BackendError] = []
    for row in range(count):
        try:
            out.append(make(row))
        except BackendTimeoutError:
            raise
        except BackendError as exc:
            out.append(exc)
    return out


@dataclass
class _Gathering:
    """Requests waiting for one batched call: the first to arrive (the leader) makes it."""

    batch: list[list[int]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    closed: bool = False
    """No more members: full, or the leader has stopped waiting (guarded by the coalescer's lock)."""
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] = field(default_factory=list)
    error: BaseException | None = None


_MAX_WINDOW_MS = 60_000.0
"""A gathering window longer than a minute is a mistake, not a trade-off."""


class _Coalescer:
    """Gathers single-prompt calls that arrive within `window_s` of each other (same key, up to
    `max_batch_size`) into one batched call, run by the first caller's thread; no thread of its own.

    The window never outlasts a member's deadline: a batch with a member whose deadline falls
    inside it starts at once (waiting would only time that member out)."""

    def __init__(self, window_s: float, max_batch_size: int) -> None:
        self.window_s = window_s
        self.max_batch_size = max_batch_size
        self._cond = threading.Condition(threading.Lock())
        self._open: dict[Any, _Gathering] = {}

    def run(self, key: Any, ids: list[int], call: Callable[[list[list[int]]], list[_T]]) -> _T:
        deadline = request_deadline()
        with self._cond:
            gathering = self._open.get(key)
            leader = gathering is None
            if gathering is None:
                gathering = self._open[key] = _Gathering()
            index = len(gathering.batch)
            gathering.batch.append(ids)
            gathering.deadlines.append(deadline)
            if len(gathering.batch) >= self.max_batch_size:
                self._close(key, gathering)
            self._cond.notify_all()  # the leader re-reads size and deadlines
        if leader:
            try:
                self._wait_for_members(key, gathering)
                deadlines = gathering.deadlines  # the batch runs until its members' latest deadline
                latest = None if None in deadlines else max(d for d in deadlines if d is not None)
                with deadline_scope(latest):
                    gathering.results = call(gathering.batch)
            except BaseException as exc:  # an interrupted wait too: the members hear of it, none hangs
                gathering.error = exc
                raise
            finally:
                with self._cond:
                    self._close(key, gathering)
                gathering.done.set()
        else:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not gathering.done.wait(wait):
                raise BackendTimeoutError("the request ran past its deadline waiting for its batch")
            if gathering.error is not None:  # a fresh exception per thread: tracebacks stay apart
                error = gathering.error
                if isinstance(error, BackendError):
                    raise type(error)(f"the batched call failed: {error}", retryable=error.retryable) from error
                raise BackendError(f"the batched call failed: {type(error).__name__}: {error}") from error
        check_deadline("the request")
        result = gathering.results[index]
        if isinstance(result, BaseException):  # this member's own row failed; the others did not
            raise result
        return result

    def _wait_for_members(self, key: Any, gathering: _Gathering) -> None:
        window_end = time.monotonic() + self.window_s
        with self._cond:
            while not gathering.closed:
                earliest = min((d for d in gathering.deadlines if d is not None), default=None)
                remaining = window_end - time.monotonic()
                if remaining <= 0 or (earliest is not None and earliest <= window_end):
                    break
                self._cond.wait(remaining)
            self._close(key, gathering)

    def _close(self, key: Any, gathering: _Gathering) -> None:
        """Caller holds the lock. Later callers start the next batch."""
        gathering.closed = True
        if self._open.get(key) is gathering:
            del self._open[key]


class BaseBackend(ABC):
    """Shared sugar over a model that exposes raw first-step logits and a reusable KV cache."""

    tokens: ResolvedTokens
    model_name: str = "unknown"
    max_context: int | None = None
    timeout: float | None = None
    """Default deadline in seconds for each prefill and each continuation; None: no deadline."""
    _coalescer: _Coalescer | None = None

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
    ) -> list[FirstTokenDistribution]:
        """One distribution per prompt; a row whose own output is unusable may be its BackendError
        instead (`each_row`), so one bad prompt does not fail the others in its batch."""

    def _prefill_batch_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[Prefill]:
        """One `Prefill` per prompt, each continuable on its own; here one prefill after another."""
        return [self._prefill_ids(ids, temperature, logit_bias) for ids in batch]

    @abstractmethod
    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        """Yield text decoded after feeding `token_id` on top of the prefill's cache; RETURN the
        `FinishReason`. `options.timeout` is already resolved against the backend's default."""

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
        timeout: float | None = None,
    ) -> Prefill:
        """One forward pass: the decision distribution plus the cache a continuation reuses."""
        bias = dict(logit_bias or {})
        check_sampling(self.tokens, temperature, bias)
        deadline = _deadline_after(timeout if timeout is not None else self.timeout)
        ids = self._checked_ids(conversation)
        with deadline_scope(deadline):
            if self._coalescer is not None:
                return self._coalescer.run(
                    ("prefill", temperature, tuple(sorted(bias.items()))), ids,
                    lambda batch: self._prefill_batch_ids(batch, temperature, bias),
                )
            return self._prefill_ids(ids, temperature, bias)

    def coalesce_requests(self, window_ms: float | None = 2.0, max_batch_size: int = 16) -> None:
        """Gather concurrent single requests (`prefill`, `first_token_distribution`: what each
        `invoke`, agent turn or decision-model call makes) into batched forwards, for many callers
        at once such as concurrent agents, which never call `batch` themselves.

        The first request of a batch waits up to `window_ms` for others with the same sampling
        (temperature, biases), up to `max_batch_size`; a full batch starts at once. The cost is up
        to `window_ms` of latency per request when it arrives alone. A batch runs until its
        members' latest deadline; a member whose own deadline passes first raises
        `BackendTimeoutError`. ``window_ms=None`` turns it off. Explicit batch calls
        (`prefill_batch`, `first_token_distributions` of several prompts) are not held back.
        """
        if window_ms is None:
            self._coalescer = None
            return
        if type(self)._prefill_batch_ids is BaseBackend._prefill_batch_ids:
            raise ConfigError(
                f"{type(self).__name__} prefills one prompt at a time: gathering requests would only queue "
                "them behind each other"
            )
        if not 0 <= window_ms <= _MAX_WINDOW_MS:  # NaN and inf too: a timed wait cannot take them
            raise ConfigError(f"window_ms must be between 0 and {_MAX_WINDOW_MS:.0f}, got {window_ms}")
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, Integral) or max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
        self._coalescer = _Coalescer(window_ms / 1000.0, max_batch_size)

    def first_token_distribution(
        self,
        conversation: str | Sequence[ChatMessage | Mapping[str, str]],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> FirstTokenDistribution:
        return self.first_token_distributions(
            [conversation], temperature=temperature, logit_bias=logit_bias, timeout=timeout
        )[0]

    @overload
    def first_token_distributions(
        self, conversations: Sequence[Prompt], *, temperature: float = ..., logit_bias: Mapping[str, float] | None = ...,
        batch_size: int = ..., progress: bool = ..., timeout: float | None = ..., return_exceptions: Literal[False] = ...,
    ) -> list[FirstTokenDistribution]: ...

    @overload
    def first_token_distributions(
        self, conversations: Sequence[Prompt], *, temperature: float = ..., logit_bias: Mapping[str, float] | None = ...,
        batch_size: int = ..., progress: bool = ..., timeout: float | None = ..., return_exceptions: Literal[True],
    ) -> list[FirstTokenDistribution | Exception]: ...

    def first_token_distributions(
        self,
        conversations: Sequence[Prompt],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
        batch_size: int = 8,
        progress: bool = False,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[FirstTokenDistribution] | list[FirstTokenDistribution | Exception]:
        """Distributions for many prompts, in batches (left-padded where the backend batches).

        `timeout` (else the backend's) bounds each batch's forward pass. Failures as in `prefill_batch`.
        """
        bias = dict(logit_bias or {})
        check_sampling(self.tokens, temperature, bias)

        def run(batch: list[list[int]]) -> list[FirstTokenDistribution]:
            return self._distributions_ids(batch, temperature, bias)

        coalescer = self._coalescer
        if coalescer is not None and len(conversations) == 1:  # a single request: may join others
            key = ("distribution", temperature, tuple(sorted(bias.items())))
            return self._run_batches(
                conversations, lambda batch: [coalescer.run(key, batch[0], run)],
                batch_size=1, timeout=timeout, return_exceptions=return_exceptions,
            )
        return self._run_batches(
            conversations, run, batch_size=batch_size, timeout=timeout, return_exceptions=return_exceptions,
            progress="first-token distributions" if progress else None,
        )

    @overload
    def prefill_batch(
        self, conversations: Sequence[Prompt], *, temperature: float = ..., logit_bias: Mapping[str, float] | None = ...,
        batch_size: int = ..., timeout: float | None = ..., return_exceptions: Literal[False] = ...,
    ) -> list[Prefill]: ...

    @overload
    def prefill_batch(
        self, conversations: Sequence[Prompt], *, temperature: float = ..., logit_bias: Mapping[str, float] | None = ...,
        batch_size: int = ..., timeout: float | None = ..., return_exceptions: Literal[True],
    ) -> list[Prefill | Exception]: ...

    def prefill_batch(
        self,
        conversations: Sequence[Prompt],
        *,
        temperature: float = 1.0,
        logit_bias: Mapping[str, float] | None = None,
        batch_size: int = 8,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Prefill] | list[Prefill | Exception]:
        """`prefill` for many prompts, in input order: prompts of similar length share one padded
        forward where the backend batches (HFBackend), and each `Prefill` holds its own cache, so
        continuing it answers as a single `prefill` would.

        A prompt that cannot be served (invalid text, too long) fails alone, before any model call;
        a failing model call fails the prompts of its batch. With `return_exceptions` a failed
        prompt's entry is its exception and the others go on; without, the first failure raises.
        `timeout` (else the backend's) bounds each batch's forward pass. Drop the prefills you will
        not continue: each holds its prompt's KV cache.
        """
        bias = dict(logit_bias or {})
        check_sampling(self.tokens, temperature, bias)
        return self._run_batches(
            conversations, lambda batch: self._prefill_batch_ids(batch, temperature, bias),
            batch_size=batch_size, timeout=timeout, return_exceptions=return_exceptions,
        )

    def _run_batches(
        self,
        conversations: Sequence[Prompt],
        run: Callable[[list[list[int]]], list[_T]],
        *,
        batch_size: int,
        timeout: float | None,
        return_exceptions: bool,
        progress: str | None = None,
    ) -> list[Any]:
        """Encode every prompt, then `run` batches of similar lengths (less padding); input order out."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        timeout = timeout if timeout is not None else self.timeout
        _deadline_after(timeout)  # validates
        out: list[Any] = [None] * len(conversations)
        encoded: list[tuple[int, list[int]]] = []
        for i, conversation in enumerate(conversations):
            try:
                encoded.append((i, self._checked_ids(conversation)))
            except Exception as exc:
                if not return_exceptions:
                    raise
                out[i] = exc
        encoded.sort(key=lambda item: len(item[1]))
        starts: Any = range(0, len(encoded), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=progress, unit="batch")
        for start in starts:
            chunk = encoded[start : start + batch_size]
            results: list[Any]
            try:
                with deadline_scope(_deadline_after(timeout)):
                    results = run([ids for _, ids in chunk])
            except Exception as exc:
                if not return_exceptions:
                    raise
                results = [exc] * len(chunk)
            for (i, _), result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException) and not return_exceptions:
                    raise result
                out[i] = result
        return out

    def stream(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> TextStream:
        """Continue after forcing decision `token` (a decision name), reusing the prefill's cache."""
        options = options or GenerationOptions()
        if options.timeout is None and self.timeout is not None:
            options = dataclasses.replace(options, timeout=self.timeout)
        token_id = self.tokens.id_for(token)
        return TextStream(self._stream_ids(prefill, token_id, options), options.stop)

    def complete(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> Generation:
        """The whole continuation and its finish reason."""
        stream = self.stream(prefill, token, options)
        text = "".join(stream)
        return Generation(text=text, finish_reason=stream.finish_reason)

    def answer_tokens(self, text: str, finish_reason: FinishReason | None, max_new_tokens: int) -> int:
        """Tokens generated for an answer, for usage reports: the limit when the answer ran into it,
        else its text re-tokenized (a user turn less an empty one; exact for text the tokenizer
        round-trips). The backends do not count as they generate, so every caller counts the same way."""
        if finish_reason == "length":
            return max_new_tokens
        if not text:
            return 0
        return len(self.encode([ChatMessage("user", text)])) - len(self.encode([ChatMessage("user", "")]))

    def generate(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> str:
        return self.complete(prefill, token, options).text

    # ---- async twins: run in a worker thread so the event loop never blocks -------------------
    async def aprefill(self, conversation: Any, **kwargs: Any) -> Prefill:
        return await asyncio.to_thread(self.prefill, conversation, **kwargs)

    async def afirst_token_distributions(self, conversations: Any, **kwargs: Any) -> list[Any]:
        return await asyncio.to_thread(self.first_token_distributions, conversations, **kwargs)

    async def aprefill_batch(self, conversations: Any, **kwargs: Any) -> list[Any]:
        return await asyncio.to_thread(self.prefill_batch, conversations, **kwargs)

    async def acomplete(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> Generation:
        """`complete` for asyncio; cancelling the awaiting task ends the generation within a token."""
        stream = self.astream(prefill, token, options)
        try:
            text = "".join([chunk async for chunk in stream])
        finally:
            await stream.aclose()
        return Generation(text=text, finish_reason=stream.finish_reason)

    async def agenerate(self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None) -> str:
        return (await self.acomplete(prefill, token, options)).text

    def astream(
        self, prefill: Prefill, token: str = RESPOND, options: GenerationOptions | None = None
    ) -> AsyncTextStream:
        """Async chunks; `.finish_reason` once exhausted; `aclose()` ends generation early."""
        return AsyncTextStream(self.stream(prefill, token, options))
