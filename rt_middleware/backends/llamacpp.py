"""Thin wrapper over llama-cpp-python: decisions from the raw first-step logits of one prompt eval.

Why not llama-cpp-python's high-level API: its logprobs are computed before `logit_bias`, drop
CONTROL tokens and need ``logits_all=True``; its `logit_bias` applies at every step (a +30 on
``[refuse]`` repeats the token forever); and `create_chat_completion` tokenizes the rendered
prompt with special tokens on, so a user typing ``[respond]`` would inject it. Here the prompt is
rendered with sandboxed Jinja, user text is tokenized with ``special=False``, the bias goes into
`distribution_from_logits` at the first step only, and the continuation reuses the KV cache.

A `Llama` is not thread-safe. Each instance of the pool is a *slot*: busy while it evaluates or
generates, then *reserved* for the prefill whose prompt its KV cache holds until that prefill is
continued or dropped. A request takes a free slot first; when none is free it takes over the oldest
reservation (that prefill's continuation then evaluates its prompt again, with identical results),
so a prefill that is never continued, or a second request from the thread holding one, never hangs.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import difflib
import inspect
import json
import queue
import threading
import time
import weakref
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rt_middleware._extras import require
from rt_middleware.backends.base import (
    BaseBackend,
    FinishReason,
    GenerationOptions,
    Prefill,
    each_row,
    fail_closed,
    request_deadline,
)
from rt_middleware.distribution import FirstTokenDistribution, distribution_from_logits
from rt_middleware.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InvalidInputError,
    TokenSchemaError,
    UnsafeTokenizationError,
)
from rt_middleware.messages import Conversation
from rt_middleware.templating import check_text, render_pieces
from rt_middleware.tokens import RefusalTokenSchema, ResolvedTokens

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["LlamaCppBackend", "control_token_ids", "last_logits", "resolve_llamacpp_tokens", "trained_context"]

_GGUF_MAGIC = b"GGUF"
_TEMPLATE_TOKENS = {  # chat-template variable -> GGUF metadata key of its token id
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}


# ---- the private llama-cpp-python API, in one place ---------------------------------------------------
def last_logits(llm: Llama) -> np.ndarray:
    """A copy of the raw logits of the last evaluated token.

    llama-cpp-python 0.3.36 no longer stores logits in `Llama.scores` unless ``logits_all=True``;
    they live in the context, reachable only through the private `_ctx`.
    """
    pointer = llm._ctx.get_logits_ith(-1)
    if not pointer:
        raise BackendError("llama.cpp has no logits for the last token (was the prompt evaluated?)")
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).copy()


def trained_context(llm: Llama) -> int | None:
    """The GGUF's trained context length (``<arch>.context_length``), None if it records none. Not
    `n_ctx()`: that is the context this Llama was opened with (llama.cpp's 512 for a vocab-only one)."""
    metadata = llm.metadata
    length = metadata.get(f"{metadata.get('general.architecture', 'llama')}.context_length")
    return int(length) if length is not None else None


def token_bytes(llm: Llama, token: int, *, special: bool = False) -> bytes:
    """The bytes of one token (`Llama.detokenize` truncates pieces longer than 32 bytes)."""
    import llama_cpp

    vocab = llm._model.vocab
    buffer = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    if n < 0:
        buffer = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    return buffer.raw[: max(n, 0)]


def control_token_ids(llm: Llama) -> frozenset[int]:
    """Ids llama.cpp types CONTROL: matched only in template text (``special=True``), never in user text."""
    import llama_cpp

    vocab = llm._model.vocab
    return frozenset(i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_control(vocab, i))


def is_end_of_generation(llm: Llama, token: int) -> bool:
    """EOS, end-of-turn (e.g. ``<|im_end|>``) and the like, as llama.cpp classifies them."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


# ---- tokens -------------------------------------------------------------------------------------------
def _tokenize(llm: Llama, text: str, *, special: bool) -> list[int]:
    """Tokenize with the per-call `special` flag: llama.cpp keeps no tokenizer state between calls."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))


def resolve_llamacpp_tokens(llm: Llama, schema: RefusalTokenSchema) -> ResolvedTokens:
    """Resolve the schema's ids (special=True) and prove user text cannot produce them.

    A decision token typed USER_DEFINED in the GGUF is matched by llama.cpp even with
    ``special=False``: that would let a user type ``[respond]``, so it is refused here.
    """
    resolved = schema.resolve(lambda token: _tokenize(llm, token, special=True))
    for name in schema.names:
        token = schema.token_for(name)
        for text in (token, f"x{token} {token}x"):
            if set(_tokenize(llm, text, special=False)) & resolved.id_set:
                raise TokenSchemaError(
                    f"user text {text!r} tokenizes to the decision id of {token!r}: the GGUF types it "
                    "USER_DEFINED, so users could inject it; re-export it typed CONTROL "
                    "(rt export-gguf does)",
                    token=token,
                )
    return resolved


def _detect_schema(llm: Llama) -> RefusalTokenSchema:
    for candidate in (RefusalTokenSchema.coconot(), RefusalTokenSchema.single()):
        if all(len(_tokenize(llm, t, special=True)) == 1 for t in candidate.tokens):
            return candidate
    raise TokenSchemaError(
        "this GGUF has neither the CoCoNot decision tokens nor [refuse]/[respond] as single tokens; "
        "load a model trained with refusal tokens or pass schema="
    )


# ---- the pool of Llama instances ----------------------------------------------------------------------
@dataclass(eq=False)
class _Lease:
    """`Prefill.state`: the claim of one prefill on the slot whose KV cache holds its prompt."""

    prompt: list[int]
    slot: _Slot | None = None


@dataclass(eq=False)
class _Slot:
    llm: Llama
    busy: bool = False
    holder: weakref.ReferenceType[_Lease] | None = None
    reserved_at: float = 0.0

    def reserved_by(self) -> _Lease | None:
        lease = self.holder() if self.holder is not None else None
        return lease if lease is not None and lease.slot is self else None


class _Pool:
    """Hands out Llama instances; a reservation dies with its lease, so nothing waits on a dropped one."""

    def __init__(self, instances: list[Llama], wait_timeout: float | None) -> None:
        self.slots = [_Slot(llm) for llm in instances]
        self._cond = threading.Condition()
        self._wait_timeout = wait_timeout

    def acquire(self, lease: _Lease | None = None, deadline: float | None = None) -> tuple[_Slot, bool]:
        """A slot made busy, and whether its KV cache still holds `lease`'s prompt.

        Waits at most `wait_timeout`, and never past the request's `deadline` (monotonic time).
        """
        wait_end = None if self._wait_timeout is None else time.monotonic() + self._wait_timeout
        end = min((t for t in (wait_end, deadline) if t is not None), default=None)
        with self._cond:
            while True:
                slot = lease.slot if lease is not None else None
                if slot is not None and not slot.busy and slot.reserved_by() is lease:
                    self._take(slot)
                    return slot, True
                idle = [s for s in self.slots if not s.busy]
                free = [s for s in idle if s.reserved_by() is None]
                chosen = free[0] if free else min(idle, key=lambda s: s.reserved_at, default=None)
                if chosen is not None:
                    self._take(chosen)
                    return chosen, False
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if end == deadline:
                        raise BackendTimeoutError(
                            "the request deadline (timeout) passed while every llama.cpp "
                            "instance was busy"
                        )
                    raise BackendTimeoutError(
                        f"every llama.cpp instance stayed busy for {self._wait_timeout:.0f} s; "
                        "raise pool_size or wait_timeout"
                    )
                self._cond.wait(remaining)

    def _take(self, slot: _Slot) -> None:
        previous = slot.reserved_by()
        if previous is not None:
            previous.slot = None
        slot.busy, slot.holder = True, None

    def release(self, slot: _Slot, lease: _Lease | None = None) -> None:
        """Make `slot` idle; with `lease`, reserved for the continuation of that prefill."""
        with self._cond:
            slot.busy = False
            if lease is not None:
                slot.holder, slot.reserved_at, lease.slot = weakref.ref(lease), time.monotonic(), slot
            self._cond.notify_all()


_END = object()


class _Generation:
    """One continuation: a worker thread fills it, the consumer drains it at its own pace.

    The buffer holds at most `max_new_tokens` text pieces (the worker never produces more), so it
    is bounded by the request itself; the instance is released as soon as generation ends, not
    when the consumer has read everything.
    """

    def __init__(self) -> None:
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.finish_reason: FinishReason | None = None

    def put(self, text: str) -> None:
        self._items.put(text)

    def finish(self, reason: FinishReason) -> None:
        self.finish_reason = reason
        self._items.put(_END)

    def fail(self, error: BaseException) -> None:
        self._items.put(error)

    def drain(self, deadline: float | None) -> Iterator[str]:
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                item = self._items.get(timeout=timeout)
            except queue.Empty:
                raise BackendTimeoutError(
                    "llama.cpp did not finish generating before the request deadline (timeout)"
                ) from None
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


# ---- the backend --------------------------------------------------------------------------------------
class LlamaCppBackend(BaseBackend):
    """Decision distributions and KV-cache continuations from a GGUF model in llama.cpp.

    `model` is a GGUF path or a `llama_cpp.Llama` you built (then `pool_size` must be 1 and the
    loading options are yours). `n_ctx` defaults to the model's trained context. `pool_size` > 1
    loads that many instances for parallel requests; with llama.cpp's default mmap loading they
    share the weights' memory on CPU (each instance adds its own KV cache and compute buffers).
    With `share_weights` (the default), the pool's instances are contexts on ONE loaded model, so
    the weights are held once even without mmap or when offloaded to a GPU (`n_gpu_layers`).
    Other `Llama` options (`n_gpu_layers`, `n_batch`, `flash_attn`, `use_mlock`, ...) pass
    through as keyword arguments; an unknown name is a ConfigError, not silently ignored.
    `f32_kv_cache` trades memory for HF parity (llama.cpp's default F16 cache moves probabilities
    by ~1e-3). Tokens are never added implicitly: a template that wants BOS renders ``bos_token``.

    `wait_timeout` bounds the wait for a busy instance; `timeout` (seconds, None = none) is the
    default deadline of each prefill and each continuation (see `BaseBackend`): it covers waiting,
    prompt evaluation (checked between `n_batch` chunks) and generation (checked per token). Both
    raise BackendTimeoutError (retryable); any other failure is a BackendError with the original
    exception as its cause, so the tenant's fail mode applies.

    With `reuse_prefix`, a prompt that starts with tokens an instance already holds in its KV
    cache (a shared system prompt) evaluates only the rest, as `Llama.generate` does; the
    probabilities then equal a fresh evaluation's within float rounding (~1e-6), not bit for bit.

    Generation runs on a worker thread into a buffer the consumer reads at its own pace: the
    instance is released when generation ends, so a slow stream reader never holds it.
    """

    def __init__(
        self,
        model: str | Path | Llama,
        schema: RefusalTokenSchema | None = None,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        pool_size: int = 1,
        chat_template: str | None = None,
        f32_kv_cache: bool = False,
        model_name: str | None = None,
        wait_timeout: float | None = 300.0,
        timeout: float | None = None,
        reuse_prefix: bool = True,
        share_weights: bool = True,
        **llama_kwargs: Any,
    ) -> None:
        llama_cpp = require("llama_cpp", extra="llamacpp", feature="LlamaCppBackend", package="llama-cpp-python")
        require("jinja2", extra="llamacpp", feature="LlamaCppBackend")
        if pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        for name, value in (("wait_timeout", wait_timeout), ("timeout", timeout)):
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds or None, got {value!r}")
        if isinstance(model, llama_cpp.Llama):
            if pool_size != 1:
                raise ConfigError("a Llama instance you built makes a pool of one; pass a GGUF path for pool_size > 1")
            if llama_kwargs or n_threads is not None or f32_kv_cache:
                raise ConfigError(
                    "loading options (n_threads, f32_kv_cache, Llama keyword arguments) apply to a GGUF "
                    "path; a Llama instance you built keeps its own"
                )
            instances = [model]
            self._owned = False
            default_name = Path(getattr(model, "model_path", "") or "llama").stem
        elif isinstance(model, str | Path):
            path = _checked_gguf_path(Path(model).expanduser())
            kwargs: dict[str, Any] = {"n_ctx": n_ctx or 0, "n_threads": n_threads, "verbose": False}
            if f32_kv_cache:
                kwargs.update(type_k=0, type_v=0)  # GGML_TYPE_F32
            kwargs.update(_checked_llama_kwargs(llama_cpp, llama_kwargs))
            instances = []
            try:
                instances.append(_load_llama(llama_cpp, path, kwargs))
                share = share_weights and not kwargs.get("lora_path")
                for _ in range(pool_size - 1):
                    instances.append(_sibling(instances[0]) if share else _load_llama(llama_cpp, path, kwargs))
            except BaseException:
                for llm in reversed(instances):
                    llm.close()
                raise
            self._owned = True
            default_name = path.stem
        else:
            raise ConfigError(f"model must be a GGUF path or a llama_cpp.Llama, got {type(model).__name__}")

        self._pool = _Pool(instances, wait_timeout)
        self.timeout = timeout
        self.reuse_prefix = reuse_prefix and not any(_is_recurrent(llm) for llm in instances)
        try:
            self._configure(instances[0], schema, n_ctx, chat_template)
        except BaseException:
            self.close()
            raise
        self.model_name = model_name or default_name

    def _configure(
        self, llm: Llama, schema: RefusalTokenSchema | None, n_ctx: int | None, chat_template: str | None
    ) -> None:
        self._tokenizer_llm = llm  # tokenizing reads the vocabulary only: safe beside a running eval
        metadata = dict(llm.metadata)
        trained = trained_context(llm) or llm.n_ctx()
        # llama.cpp pads n_ctx up (to 256): enforce the size asked for
        self.max_context = min(n_ctx or trained, llm.n_ctx(), trained)
        self.tokens = resolve_llamacpp_tokens(llm, schema or _detect_schema(llm))
        self._control_ids = control_token_ids(llm) | self.tokens.id_set
        template = chat_template or metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError("the GGUF has no chat template (tokenizer.chat_template); pass chat_template=")
        self.chat_template = template
        self._template = _compile_template(template)
        self._template_vars = {
            name: _special_text(llm, metadata.get(f"tokenizer.ggml.{key}"))
            for name, key in _TEMPLATE_TOKENS.items()
        }

    def close(self) -> None:
        """Free the llama.cpp instances this backend loaded (not a Llama you passed in)."""
        if self._owned:
            for slot in reversed(self._pool.slots):  # contexts before the model they share
                slot.llm.close()

    # ---- template ------------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> list[int]:
        """Template pieces with ``special=True``, message text with ``special=False``; no implicit BOS.

        Thread-safe: `special` is an argument of each llama.cpp tokenize call, not shared state.
        Defence in depth: message text that still tokenizes to a CONTROL id (a decision token,
        ``<|im_start|>``...) raises UnsafeTokenizationError instead of reaching the model.
        """
        import jinja2

        check_text(conversation)

        def render(messages: list[dict[str, str]]) -> str:
            try:
                return self._template.render(
                    messages=messages, add_generation_prompt=True, **self._template_vars
                )
            except jinja2.TemplateError as exc:
                raise InvalidInputError(f"the chat template rejected this conversation: {exc}") from exc

        ids: list[int] = []
        with fail_closed("llama.cpp failed"):
            for text, is_message in render_pieces(render, conversation):
                piece = _tokenize(self._tokenizer_llm, text, special=not is_message)
                if is_message and not self._control_ids.isdisjoint(piece):
                    leaked = sorted(self._control_ids.intersection(piece))
                    raise UnsafeTokenizationError(
                        f"message text tokenized to control token id(s) {leaked}; the request was not run"
                    )
                ids.extend(piece)
        return ids

    # ---- model calls ---------------------------------------------------------------------------
    def _eval_prompt(self, llm: Llama, ids: list[int], deadline: float | None) -> int:
        """Make `ids` the instance's whole context; return how many tokens were evaluated.

        The longest prefix the KV cache already holds is kept (at least the last token is
        evaluated again, for fresh logits); the rest is evaluated in `n_batch` chunks with the
        deadline checked between them.
        """
        keep = _common_prefix(llm, ids) if self.reuse_prefix else 0
        if keep and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0
        if keep:
            llm.n_tokens = keep
        else:
            llm.reset()
        step = max(int(llm.n_batch), 1)
        for start in range(keep, len(ids), step):
            _check_deadline(deadline)
            llm.eval(ids[start : start + step])
        return len(ids) - keep

    def _first_step(
        self, llm: Llama, ids: list[int], temperature: float, bias: Mapping[str, float], deadline: float | None
    ) -> FirstTokenDistribution:
        try:
            with fail_closed("llama.cpp failed"):
                self._eval_prompt(llm, ids, deadline)
                row = last_logits(llm)
        except BaseException:
            llm.reset()  # a failed or interrupted eval leaves nothing worth reusing
            raise
        return distribution_from_logits(
            row, self.tokens, temperature=temperature, logit_bias=bias, prompt_tokens=len(ids)
        )

    def _prefill_ids(self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]) -> Prefill:
        deadline = request_deadline()
        slot, _ = self._pool.acquire(deadline=deadline)
        lease: _Lease | None = None
        try:
            distribution = self._first_step(slot.llm, ids, temperature, logit_bias, deadline)
            lease = _Lease(prompt=list(ids))
        finally:
            self._pool.release(slot, lease)
        return Prefill(distribution=distribution, input_ids=list(ids), state=lease)

    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]:
        deadline = request_deadline()

        def one(row: int) -> FirstTokenDistribution:  # one sequence per context: no padding batch here
            slot, _ = self._pool.acquire(deadline=deadline)
            try:
                return self._first_step(slot.llm, batch[row], temperature, logit_bias, deadline)
            finally:
                self._pool.release(slot)

        return each_row(one, len(batch))

    def _stream_ids(
        self, prefill: Prefill, token_id: int, options: GenerationOptions
    ) -> Generator[str, None, FinishReason | None]:
        lease = prefill.take_state()
        if not isinstance(lease, _Lease):
            raise ConfigError("this Prefill was not made by this LlamaCppBackend")
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        slot, cached = self._pool.acquire(lease, deadline)
        generation = _Generation()
        try:
            worker = threading.Thread(
                target=self._generate,
                args=(slot, lease.prompt, cached, token_id, options, deadline, generation),
                name="rt-llamacpp-generate",
            )
            worker.start()
        except BaseException:
            self._pool.release(slot)
            raise
        try:
            yield from generation.drain(deadline)
        finally:
            generation.cancelled.set()  # a consumer that stops early stops the worker at the next token
        return generation.finish_reason

    def _generate(
        self,
        slot: _Slot,
        prompt: list[int],
        cached: bool,
        token_id: int,
        options: GenerationOptions,
        deadline: float | None,
        generation: _Generation,
    ) -> None:
        """The worker: evaluate, sample with llama.cpp's sampler chain, hand text over; always ends."""
        llm = slot.llm
        reason: FinishReason = "length"
        try:
            with fail_closed("llama.cpp failed"):
                if not cached:  # another request took the slot: evaluate again (a cached prefix is kept)
                    self._eval_prompt(llm, prompt, deadline)
                llm.eval([token_id])
                room = self.max_context - len(prompt) - 1
                limit = min(options.max_new_tokens, room)
                reason = "length" if options.max_new_tokens <= room else "context"
                sampler = _sampler(options)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                try:
                    for step in range(limit):
                        if generation.cancelled.is_set():
                            break
                        _check_deadline(deadline)
                        token = sampler.sample(llm._ctx, -1)
                        if is_end_of_generation(llm, token):
                            reason = "stop"
                            break
                        text = decoder.decode(token_bytes(llm, token))
                        if text:
                            generation.put(text)
                        if step + 1 < limit:
                            llm.eval([token])
                finally:
                    sampler.close()
                tail = decoder.decode(b"", final=True)
                if tail:
                    generation.put(tail)
        except BaseException as exc:  # handed to the consumer, whose thread raises it
            llm.reset()
            self._pool.release(slot)
            generation.fail(exc)
            return
        self._pool.release(slot)
        generation.finish(reason)


def _sampler(options: GenerationOptions) -> Any:
    """llama.cpp's sampler chain: greedy at temperature 0, else temperature -> top-p -> seeded draw."""
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    sampler = LlamaSampler()
    if options.temperature == 0:
        sampler.add_greedy()
    else:
        sampler.add_temp(options.temperature)
        if options.top_p < 1.0:
            sampler.add_top_p(options.top_p, 1)
        seed = llama_cpp.LLAMA_DEFAULT_SEED if options.seed is None else options.seed & 0xFFFFFFFF
        sampler.add_dist(seed)
    return sampler


def _common_prefix(llm: Llama, ids: list[int]) -> int:
    """How many leading tokens of `ids` the instance's KV cache holds, leaving one to evaluate."""
    n = min(int(llm.n_tokens), len(ids) - 1)
    if n <= 0:
        return 0
    differ = np.flatnonzero(llm.input_ids[:n] != np.asarray(ids[:n], dtype=np.intc))
    return int(differ[0]) if differ.size else n


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise BackendTimeoutError("llama.cpp did not finish before the request deadline (timeout)")


def _is_recurrent(llm: Llama) -> bool:
    """Recurrent and hybrid models cannot drop the tail of their state: no prefix reuse there."""
    return bool(getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False))


def _checked_llama_kwargs(llama_cpp: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """`Llama` keyword arguments; a name `Llama` would silently swallow (it takes **kwargs) is refused."""
    accepted = {
        name
        for name, param in inspect.signature(llama_cpp.Llama.__init__).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    managed = {"logits_all", "embedding", "vocab_only"}
    for name in options:
        if name in managed:
            raise ConfigError(f"Llama option {name!r} is managed by LlamaCppBackend and cannot be passed")
        if name not in accepted:
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown Llama option {name!r}{hint}")
    return dict(options)


def _checked_gguf_path(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"GGUF file not found: {path}")
    with path.open("rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            raise ConfigError(f"{path} is not a GGUF file (bad magic bytes)")
    return path


def _sibling(llm: Llama) -> Llama:
    """Another `Llama` on `llm`'s loaded model: its own context (KV cache, batch), the weights shared.

    llama.cpp runs several contexts on one `llama_model` concurrently; llama-cpp-python has no
    public way to build one, so this copies the wrapper and gives it a context of its own. Closing
    `llm` frees the model (and every sibling's context with it): close siblings first.
    """
    from llama_cpp import _internals as internals

    twin = object.__new__(type(llm))  # not copy.copy: Llama's __setstate__ loads the model again
    twin.__dict__.update(llm.__dict__)
    twin._stack = contextlib.ExitStack()
    twin._ctx = twin._stack.enter_context(
        contextlib.closing(internals.LlamaContext(model=llm._model, params=llm.context_params, verbose=False))
    )
    twin._batch = twin._stack.enter_context(
        contextlib.closing(
            internals.LlamaBatch(n_tokens=llm.n_batch, embd=0, n_seq_max=llm.context_params.n_ctx, verbose=False)
        )
    )
    twin.input_ids = np.empty_like(llm.input_ids)  # untouched pages, as Llama allocates them
    twin.scores = np.empty_like(llm.scores)
    twin.n_tokens = 0
    twin._requires_eval = True
    twin._candidates = internals.LlamaTokenDataArray(n_vocab=llm.n_vocab())
    twin._sampler = None
    return twin


def _load_llama(llama_cpp: Any, path: Path, kwargs: dict[str, Any]) -> Llama:
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"llama.cpp could not load {path} (corrupt or unsupported GGUF?): {exc}") from exc


def _compile_template(template: str) -> Any:
    """The chat template in a sandbox, with the settings and helpers transformers gives it."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"the chat template does not compile: {exc}") from exc


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    """transformers' `tojson` (no HTML escaping), so tool-calling templates render the same text."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _special_text(llm: Llama, token_id: Any) -> str:
    if token_id is None:
        return ""
    return token_bytes(llm, int(token_id), special=True).decode("utf-8", errors="replace")
