"""Thin wrapper over a transformers causal LM and its tokenizer.

Failures: any exception from tokenization, the model or generation becomes a `BackendError`
(the original kept as ``__cause__``), so the router's fail mode applies; only errors of
`rt_middleware.errors` pass through as themselves.

Deadlines (`timeout=` here, per call on `prefill`, or `GenerationOptions.timeout`): every decoder
layer and up to three more evenly spaced ones check the request's deadline before they run, so a
prefill or a generation step stops at the next such checkpoint after the deadline and raises
`BackendTimeoutError`; generation also stops between tokens (a stopping criterion). What cannot
be interrupted: the layers between two checkpoints (a quarter of the model), and the tokenizer. A forward that hangs inside a kernel (a deadlocked device) still blocks its caller.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import queue
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rt_middleware._extras import require
from rt_middleware.backends.base import (
    BaseBackend,
    FinishReason,
    GenerationOptions,
    Prefill,
    check_deadline,
    deadline_scope,
    each_row,
    fail_closed,
)
from rt_middleware.distribution import FirstTokenDistribution, distribution_from_logits
from rt_middleware.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    RTError,
    TokenSchemaError,
    UnsafeTokenizationError,
)
from rt_middleware.messages import Conversation
from rt_middleware.templating import ChatEncoder
from rt_middleware.tokens import RefusalTokenSchema, ResolvedTokens

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["HFBackend", "resolve_hf_tokens"]

logger = logging.getLogger(__name__)

_GENERATION_THREADS = 64
"""Continuations one backend generates at once; more wait for a free generation thread
(`_hf_generation.GenerationThreads`: long-lived, so CUDA's per-thread state is built once)."""

_DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                "float16": "float16", "fp16": "float16", "half": "float16", "float64": "float64",
                "double": "float64"}


def resolve_hf_tokens(
    tokenizer: PreTrainedTokenizerBase, schema: RefusalTokenSchema, encoder: ChatEncoder | None = None
) -> ResolvedTokens:
    """Resolve the schema's ids and prove user text cannot produce them."""

    def encode(token: str) -> list[int]:
        return list(tokenizer.encode(token, add_special_tokens=False))

    resolved = schema.resolve(encode)
    added = tokenizer.added_tokens_decoder
    for name, idx in resolved.ids.items():
        token = schema.token_for(name)
        if idx not in added or not added[idx].special:
            raise TokenSchemaError(
                f"decision token {token!r} is in the vocabulary but not a special token, so user text "
                "typing it would produce its id; add it with tokenizer.add_special_tokens("
                "{'additional_special_tokens': [...]})",
                token=token,
            )
        try:
            (encoder or ChatEncoder(tokenizer)).encode_text(token)
        except UnsafeTokenizationError:
            raise TokenSchemaError(f"user text {token!r} tokenizes to a special id", token=token) from None
    return resolved



@contextlib.contextmanager
def _loading_bar(transformers: Any, show: bool) -> Iterator[None]:
    """transformers' load progress bar on or off for one load, restored afterwards."""
    hf_logging = transformers.utils.logging
    was_on = hf_logging.is_progress_bar_enabled()
    if show == was_on:
        yield
        return
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()

class HFBackend(BaseBackend):
    """Decision distributions and KV-cache continuations from a transformers causal LM.

    Thread-safe for concurrent requests: each prefill owns its cache, tokenization uses private
    tokenizer copies fixed at construction (`ChatEncoder`), sampling uses a per-request
    `torch.Generator`. On CPU, concurrent requests share the cores, so throughput rises little.

    Construction registers a forward pre-hook on up to 4 decoder layers of `model` (once per
    model; a no-op outside a request with a deadline): that is how deadlines interrupt a forward.

    On CUDA, construction also turns PyTorch's cuDNN attention off, process-wide (torch has no
    per-call switch), unless `cudnn_attention=True`: cuDNN attention builds a graph for every new
    shape and caches it per thread, so decoding, whose key length grows each token, in a
    generation thread per request, rebuilt a graph every token (46 ms per token on an H200, the
    respond path 2.9x slower than plain `generate` on a Llama-3-8B shape; issue #16's GPU check).
    Flash and memory-efficient attention need no build and serve the same calls.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        schema: RefusalTokenSchema | None = None,
        *,
        chat_template: str | None = None,
        max_context: int | None = None,
        model_name: str | None = None,
        timeout: float | None = None,
        cudnn_attention: bool = False,
    ) -> None:
        self._torch = require("torch", extra="hf", feature="HFBackend")
        require("transformers", extra="hf", feature="HFBackend")
        from rt_middleware.backends import _hf_generation

        self._gen = _hf_generation
        self.model = model.eval()
        self.tokenizer = tokenizer
        if schema is None:
            specials = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
            schema = RefusalTokenSchema.detect(specials) or RefusalTokenSchema.coconot()
        self.encoder = ChatEncoder(tokenizer, chat_template)
        self.chat_template = self.encoder.chat_template
        if not self.chat_template:
            raise ConfigError("the tokenizer has no chat template; pass chat_template=")
        self.tokens = resolve_hf_tokens(tokenizer, schema, self.encoder)
        cfg_len = getattr(model.config, "max_position_embeddings", None)
        tok_len = getattr(tokenizer, "model_max_length", None)
        self.max_context = max_context or cfg_len or (tok_len if tok_len and tok_len < 10**7 else None)
        self.model_name = model_name or getattr(model.config, "name_or_path", None) or type(model).__name__
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds or None, got {timeout}")
        self.timeout = timeout
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self._eos_ids = self._eos_token_ids()
        self._row_caches = _plain_dynamic_cache(model.config)
        self._generation_threads = _hf_generation.GenerationThreads(_GENERATION_THREADS, "rt-hf-generate")
        _hf_generation.install_deadline_hooks(model)
        if not cudnn_attention:
            _avoid_cudnn_attention(self._torch, model)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        schema: RefusalTokenSchema | None = None,
        *,
        device: str | Any | None = None,
        dtype: str | Any | None = None,
        device_map: str | dict[str, Any] | None = None,
        attn_implementation: str | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> HFBackend:
        """Load a model directory saved with `save_pretrained` (tokenizer included).

        `device`: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``, ... or a `torch.device`; or give
        `device_map` (``"auto"``, a dict) to let accelerate place the layers (not both).
        `dtype`: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` (the checkpoint's) or a
        `torch.dtype`; default float32 on CPU, bfloat16 elsewhere. Decision probabilities are
        computed in float64 from the logits whatever the dtype. `attn_implementation`: e.g.
        ``"eager"``, ``"sdpa"``, ``"flash_attention_2"``. `progress`: show transformers' "Loading
        weights" bar (off by default: noise for a load of seconds; transformers' switch is
        process-wide, so a concurrent load elsewhere is quiet for that moment too). Other keywords
        go to the constructor.
        """
        _check_backend_options(cls, kwargs)  # before minutes of loading, not after
        torch = require("torch", extra="hf", feature="HFBackend")
        transformers = require("transformers", extra="hf", feature="HFBackend")
        from safetensors import SafetensorError  # a truncated weights file (transformers depends on it)

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a transformers model directory (no config.json)")
        if device is not None and device_map is not None:
            raise ConfigError("give device= or device_map=, not both")
        try:
            target = torch.device(device if device is not None else "cpu")
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"unknown device {device!r}: {exc}") from None
        load: dict[str, Any] = {"dtype": _resolve_dtype(torch, dtype, target if device_map is None else None)}
        if device_map is not None:
            load["device_map"] = device_map
        if attn_implementation is not None:
            load["attn_implementation"] = attn_implementation
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
            with _loading_bar(transformers, progress):
                model = transformers.AutoModelForCausalLM.from_pretrained(str(path), **load)
            if device_map is None and target.type != "cpu":
                model = model.to(target)
        except (OSError, ValueError, RuntimeError, ImportError, AssertionError, SafetensorError) as exc:
            raise ConfigError(f"could not load {path} ({load}, device={device}): {exc}") from exc
        return cls(model, tokenizer, schema, model_name=kwargs.pop("model_name", path.name), **kwargs)

    def _eos_token_ids(self) -> list[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    # ---- template --------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> list[int]:
        """Template text is tokenized with special tokens; message text never yields a special id.

        Thread-safe: `ChatEncoder` tokenizes with private tokenizer copies fixed at construction.
        """
        try:
            return self.encoder.encode(conversation)
        except RTError:
            raise
        except Exception as exc:
            raise BackendError(f"tokenization failed: {type(exc).__name__}: {exc}") from exc

    # ---- model calls -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str = "transformers model failed") -> Iterator[None]:
        """Any failure becomes a BackendError (errors of rt_middleware pass through)."""
        with fail_closed(what), self._torch.inference_mode():
            yield

    @property
    def _device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    def _distribution(self, row: Any, temperature: float, logit_bias: Mapping[str, float], n: int) -> FirstTokenDistribution:
        return distribution_from_logits(
            row, self.tokens, temperature=temperature, logit_bias=logit_bias, prompt_tokens=n
        )

    def _prefill_ids(self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]) -> Prefill:
        from transformers import DynamicCache

        torch = self._torch
        with self._errors():
            check_deadline("the prefill")
            cache = DynamicCache(config=self.model.config)
            out = self.model(
                input_ids=torch.tensor([ids], device=self._device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            row = out.logits[0, -1].to(torch.float64).cpu().numpy()
            check_deadline("the prefill")
        dist = self._distribution(row, temperature, logit_bias, len(ids))
        return Prefill(distribution=dist, input_ids=ids, state=cache)

    def _left_padded(self, batch: list[list[int]]) -> dict[str, Any]:
        """Model inputs for prompts of different lengths: pads on the left, masked out, and each
        prompt's positions counted from 0 as if it ran alone."""
        torch = self._torch
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self._device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
                "position_ids": positions.to(device), "logits_to_keep": 1}

    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]:
        torch = self._torch
        with self._errors():
            check_deadline("the prefill")
            logits = self.model(**self._left_padded(batch), use_cache=False).logits[:, -1]
            rows = logits.to(torch.float64).cpu().numpy()
            check_deadline("the prefill")
        return each_row(lambda i: self._distribution(rows[i], temperature, logit_bias, len(batch[i])), len(batch))

    def _prefill_batch_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[Prefill]:
        """One left-padded forward with a cache; each prompt gets a copy of its own row's keys and
        values without the padding, which is what a single prefill of it would have cached.

        Only for caches made of plain full-attention layers; others (sliding window, linear
        attention, ...) keep state a row slice does not capture, so they prefill one by one.
        """
        if len(batch) == 1 or not self._row_caches:
            return super()._prefill_batch_ids(batch, temperature, logit_bias)
        from transformers import DynamicCache

        torch = self._torch
        with self._errors():
            check_deadline("the prefill")
            cache = DynamicCache(config=self.model.config)
            logits = self.model(**self._left_padded(batch), cache=cache, use_cache=True).logits[:, -1]
            rows = logits.to(torch.float64).cpu().numpy()
            check_deadline("the prefill")
            caches = [DynamicCache(config=self.model.config) for _ in batch]
            width = max(len(ids) for ids in batch)
            for index, layer in enumerate(cache.layers):
                if not layer.is_initialized:
                    continue
                for row, (ids, own) in enumerate(zip(batch, caches, strict=True)):
                    start = width - len(ids)  # `update` copies the slice: rows share no storage
                    own.update(layer.keys[row : row + 1, :, start:], layer.values[row : row + 1, :, start:], index)
                layer.keys = layer.values = None  # free the batch's copy layer by layer
        return each_row(
            lambda i: Prefill(self._distribution(rows[i], temperature, logit_bias, len(batch[i])), batch[i],
                              state=caches[i]),
            len(batch),
        )

    def _generate_kwargs(self, ids: list[int], cache: Any, max_new_tokens: int, options: GenerationOptions,
                         interrupt: Any, streamer: Any) -> dict[str, Any]:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        torch = self._torch
        device = self._device
        processors = LogitsProcessorList()
        if options.temperature > 0:  # sampled by SeededSampling; generate() itself stays greedy
            processors.append(TemperatureLogitsWarper(options.temperature))
            if options.top_p < 1:
                processors.append(TopPLogitsWarper(options.top_p))
            processors.append(self._gen.SeededSampling(options.seed))
        return {
            "input_ids": torch.tensor([ids], device=device),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long, device=device),
            "cache": cache,
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._eos_ids or None,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "logits_processor": processors,
            "stopping_criteria": self._gen_stopping(interrupt),
            "streamer": streamer,
        }

    def _gen_stopping(self, interrupt: Any) -> Any:
        from transformers import StoppingCriteriaList

        return StoppingCriteriaList([interrupt])

    def _run_generate(self, kwargs: dict[str, Any], streamer: Any, deadline: float | None) -> None:
        try:
            with deadline_scope(deadline), self._torch.inference_mode():
                self.model.generate(**kwargs)
        except BaseException as exc:  # handed to the consuming thread
            streamer.fail(exc)

    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        cache = prefill.take_state()
        ids = [*prefill.input_ids, token_id]
        limit, at_limit = options.max_new_tokens, "length"
        if self.max_context is not None:
            room = self.max_context - len(ids)
            if room <= 0:
                return "context"
            if room < limit:
                limit, at_limit = room, "context"
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        interrupt = self._gen.Interrupt(deadline)
        streamer = self._gen.TokenStreamer(self.tokenizer, self._eos_ids, self.encoder.decoding_backend)
        with self._errors("transformers generation failed"):
            kwargs = self._generate_kwargs(ids, cache, limit, options, interrupt, streamer)
        job = self._generation_threads.submit(lambda: self._run_generate(kwargs, streamer, deadline),
                                              interrupt.cancelled.set)
        try:
            with fail_closed("transformers generation failed"):  # no inference_mode across yields
                while True:
                    # queued behind busy generation threads: the deadline still holds
                    waiting = deadline is not None and not job.started
                    streamer.timeout = max(deadline - time.monotonic(), 0.0) if waiting else None  # type: ignore[operator]
                    try:
                        text = next(streamer)
                    except StopIteration:
                        break
                    except queue.Empty:
                        if job.cancel():
                            raise BackendTimeoutError(
                                f"no generation thread came free within the deadline ({options.timeout} s)"
                            ) from None
                        continue  # it started meanwhile and stops itself at the deadline
                    if text:
                        yield text
        finally:  # a consumer that stops early (stop string, closed stream) ends generation too
            interrupt.cancelled.set()
            if not job.cancel():  # a queued job is dropped here; a running one is waited for
                job.wait()
        if interrupt.timed_out:
            raise BackendTimeoutError(
                f"generation ran past its deadline ({options.timeout} s) after {streamer.n_tokens} tokens"
            )
        reason: FinishReason = "stop" if streamer.ended_on_eos or streamer.n_tokens < limit else at_limit
        return reason


def _avoid_cudnn_attention(torch: Any, model: Any) -> bool:
    """Turn cuDNN scaled-dot-product attention off when `model` has weights on CUDA (see
    `HFBackend`); True when this call turned it off."""
    if not any(p.device.type == "cuda" for p in model.parameters()) or not torch.backends.cuda.cudnn_sdp_enabled():
        return False
    torch.backends.cuda.enable_cudnn_sdp(False)
    logger.info("turned PyTorch's cuDNN attention off (process-wide): it rebuilds a graph per decoding step; "
                "flash / memory-efficient attention serve instead (HFBackend(cudnn_attention=True) keeps it)")
    return True


def _plain_dynamic_cache(config: Any) -> bool:
    """True when the model's `DynamicCache` holds only full-attention layers, whose rows can be sliced."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        cache = DynamicCache(config=config)
    except Exception:  # an architecture transformers builds no config cache for: prefill one by one
        return False
    if not cache.layers:  # no layer types in the config: layers are made lazily, as DynamicLayer
        return cache.layer_class_to_replicate is DynamicLayer
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _resolve_dtype(torch: Any, dtype: Any, device: Any) -> Any:
    """A torch dtype or "auto"; default float32 on CPU (or an unknown placement: device_map), else bfloat16."""
    if dtype is None:
        return torch.float32 if device is None or device.type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).removeprefix("torch."))
    if name is None:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16, float64, auto")
    return getattr(torch, name)


def _check_backend_options(cls: type, options: Mapping[str, Any]) -> None:
    """Keyword arguments `from_pretrained` hands to the constructor: a typo is a ConfigError naming
    the closest option, not a TypeError."""
    accepted = [name for name, param in inspect.signature(cls.__init__).parameters.items()
                if param.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                and name not in ("self", "model", "tokenizer", "schema")]
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; options: {', '.join(accepted)}"
            raise ConfigError(f"unknown HFBackend option {name!r}{hint}")
