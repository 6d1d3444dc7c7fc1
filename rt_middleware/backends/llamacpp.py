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
import json
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rt_middleware._extras import require
from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill
from rt_middleware.distribution import FirstTokenDistribution, distribution_from_logits
from rt_middleware.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InvalidInputError,
    RTError,
    TokenSchemaError,
)
from rt_middleware.messages import Conversation
from rt_middleware.templating import render_pieces
from rt_middleware.tokens import RefusalTokenSchema, ResolvedTokens

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["LlamaCppBackend", "last_logits", "resolve_llamacpp_tokens"]

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


def is_end_of_generation(llm: Llama, token: int) -> bool:
    """EOS, end-of-turn (e.g. ``<|im_end|>``) and the like, as llama.cpp classifies them."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


# ---- tokens -------------------------------------------------------------------------------------------
def _tokenize(llm: Llama, text: str, *, special: bool) -> list[int]:
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

    def acquire(self, lease: _Lease | None = None) -> tuple[_Slot, bool]:
        """A slot made busy, and whether its KV cache still holds `lease`'s prompt."""
        deadline = None if self._wait_timeout is None else time.monotonic() + self._wait_timeout
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
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
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


# ---- the backend --------------------------------------------------------------------------------------
class LlamaCppBackend(BaseBackend):
    """Decision distributions and KV-cache continuations from a GGUF model in llama.cpp.

    `model` is a GGUF path or a `llama_cpp.Llama` you built (then `pool_size` must be 1 and the
    loading options are yours). `n_ctx` defaults to the model's trained context. `pool_size` > 1
    loads that many instances for parallel requests.
    `f32_kv_cache` trades memory for HF parity (llama.cpp's default F16 cache moves probabilities
    by ~1e-3). Tokens are never added implicitly: a template that wants BOS renders ``bos_token``.
    `wait_timeout` bounds the wait for a busy instance (then BackendTimeoutError, retryable).
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
    ) -> None:
        llama_cpp = require("llama_cpp", extra="llamacpp", feature="LlamaCppBackend", package="llama-cpp-python")
        require("jinja2", extra="llamacpp", feature="LlamaCppBackend")
        if pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        if isinstance(model, llama_cpp.Llama):
            if pool_size != 1:
                raise ConfigError("a Llama instance you built makes a pool of one; pass a GGUF path for pool_size > 1")
            instances = [model]
            self._owned = False
            default_name = Path(getattr(model, "model_path", "") or "llama").stem
        elif isinstance(model, str | Path):
            path = _checked_gguf_path(Path(model).expanduser())
            kwargs: dict[str, Any] = {"n_ctx": n_ctx or 0, "n_threads": n_threads, "verbose": False}
            if f32_kv_cache:
                kwargs.update(type_k=0, type_v=0)  # GGML_TYPE_F32
            instances = [_load_llama(llama_cpp, path, kwargs) for _ in range(pool_size)]
            self._owned = True
            default_name = path.stem
        else:
            raise ConfigError(f"model must be a GGUF path or a llama_cpp.Llama, got {type(model).__name__}")

        self._pool = _Pool(instances, wait_timeout)
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
        arch = metadata.get("general.architecture", "llama")
        trained = int(metadata.get(f"{arch}.context_length", llm.n_ctx()))
        # llama.cpp pads n_ctx up (to 256): enforce the size asked for
        self.max_context = min(n_ctx or trained, llm.n_ctx(), trained)
        self.tokens = resolve_llamacpp_tokens(llm, schema or _detect_schema(llm))
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
            for slot in self._pool.slots:
                slot.llm.close()

    # ---- template ------------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> list[int]:
        """Template pieces with ``special=True``, message text with ``special=False``; no implicit BOS."""
        import jinja2

        def render(messages: list[dict[str, str]]) -> str:
            try:
                return self._template.render(
                    messages=messages, add_generation_prompt=True, **self._template_vars
                )
            except jinja2.TemplateError as exc:
                raise InvalidInputError(f"the chat template rejected this conversation: {exc}") from exc

        ids: list[int] = []
        for text, is_message in render_pieces(render, conversation):
            ids.extend(_tokenize(self._tokenizer_llm, text, special=not is_message))
        return ids

    # ---- model calls ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RTError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc

    def _first_step(
        self, llm: Llama, ids: list[int], temperature: float, bias: Mapping[str, float]
    ) -> FirstTokenDistribution:
        with self._errors():
            llm.reset()
            llm.eval(ids)
            row = last_logits(llm)
        return distribution_from_logits(
            row, self.tokens, temperature=temperature, logit_bias=bias, prompt_tokens=len(ids)
        )

    def _prefill_ids(self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]) -> Prefill:
        slot, _ = self._pool.acquire()
        lease: _Lease | None = None
        try:
            distribution = self._first_step(slot.llm, ids, temperature, logit_bias)
            lease = _Lease(prompt=list(ids))
        finally:
            self._pool.release(slot, lease)
        return Prefill(distribution=distribution, input_ids=list(ids), state=lease)

    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]:
        out = []
        for ids in batch:  # llama.cpp evaluates one sequence per context: no padding batch here
            slot, _ = self._pool.acquire()
            try:
                out.append(self._first_step(slot.llm, ids, temperature, logit_bias))
            finally:
                self._pool.release(slot)
        return out

    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        lease = prefill.take_state()
        if not isinstance(lease, _Lease):
            raise ConfigError("this Prefill was not made by this LlamaCppBackend")
        slot, cached = self._pool.acquire(lease)
        try:
            llm = slot.llm
            with self._errors():
                if not cached:  # another request took the slot: the same evals again, same logits
                    llm.reset()
                    llm.eval(lease.prompt)
                llm.eval([token_id])
            yield from self._sample(llm, options, room=self.max_context - len(lease.prompt) - 1)
        finally:
            self._pool.release(slot)

    def _sample(self, llm: Llama, options: GenerationOptions, room: int) -> Iterator[str]:
        rng = np.random.default_rng(options.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for _ in range(min(options.max_new_tokens, room)):
            with self._errors():
                token = _choose(last_logits(llm), options, rng)
                if is_end_of_generation(llm, token):
                    break
                text = decoder.decode(token_bytes(llm, token))
            if text:
                yield text
            with self._errors():
                llm.eval([token])
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


def _choose(logits: np.ndarray, options: GenerationOptions, rng: np.random.Generator) -> int:
    """Greedy at temperature 0; otherwise nucleus sampling from logits / temperature."""
    if options.temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / options.temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = int(np.searchsorted(np.cumsum(probs[order]), options.top_p)) + 1
    kept = order[:keep]
    return int(rng.choice(kept, p=probs[kept] / probs[kept].sum()))


def _checked_gguf_path(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"GGUF file not found: {path}")
    with path.open("rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            raise ConfigError(f"{path} is not a GGUF file (bad magic bytes)")
    return path


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
