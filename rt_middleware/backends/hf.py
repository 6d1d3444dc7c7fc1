"""Thin wrapper over a transformers causal LM and its tokenizer."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rt_middleware._extras import require
from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill
from rt_middleware.distribution import FirstTokenDistribution, distribution_from_logits
from rt_middleware.errors import BackendError, ConfigError, TokenSchemaError, UnsafeTokenizationError
from rt_middleware.messages import Conversation
from rt_middleware.templating import ChatEncoder
from rt_middleware.tokens import RefusalTokenSchema, ResolvedTokens

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["HFBackend", "resolve_hf_tokens"]

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


class HFBackend(BaseBackend):
    """Decision distributions and KV-cache continuations from a transformers causal LM.

    Thread-safe for concurrent requests (each prefill owns its cache); on CPU, concurrent
    requests share the cores, so throughput rises little.
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
    ) -> None:
        self._torch = require("torch", extra="hf", feature="HFBackend")
        require("transformers", extra="hf", feature="HFBackend")
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
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self._eos_ids = self._eos_token_ids()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        schema: RefusalTokenSchema | None = None,
        *,
        dtype: str = "float32",
        **kwargs: Any,
    ) -> HFBackend:
        """Load a model directory saved with `save_pretrained` (tokenizer included)."""
        require("torch", extra="hf", feature="HFBackend")
        transformers = require("transformers", extra="hf", feature="HFBackend")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a transformers model directory (no config.json)")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
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
        return self.encoder.encode(conversation)

    # ---- model calls -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            with self._torch.inference_mode():
                yield
        except (RuntimeError, IndexError) as exc:
            raise BackendError(f"transformers model failed: {exc}") from exc

    @property
    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _prefill_ids(self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]) -> Prefill:
        from transformers import DynamicCache

        torch = self._torch
        with self._errors():
            cache = DynamicCache(config=self.model.config)
            out = self.model(
                input_ids=torch.tensor([ids], device=self._device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            row = out.logits[0, -1].float().cpu().numpy()
        dist = distribution_from_logits(
            row, self.tokens, temperature=temperature, logit_bias=logit_bias, prompt_tokens=len(ids)
        )
        return Prefill(distribution=dist, input_ids=ids, state=cache)

    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]:
        torch = self._torch
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._errors():
            logits = self.model(
                input_ids=input_ids.to(self._device),
                attention_mask=mask.to(self._device),
                position_ids=positions.to(self._device),
                use_cache=False,
                logits_to_keep=1,
            ).logits[:, -1].float().cpu().numpy()
        return [
            distribution_from_logits(
                logits[i], self.tokens, temperature=temperature, logit_bias=logit_bias,
                prompt_tokens=len(ids),
            )
            for i, ids in enumerate(batch)
        ]

    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self._torch
        cache = prefill.take_state()
        ids = [*prefill.input_ids, token_id]
        if self.max_context is not None:
            room = self.max_context - len(ids)
            if room <= 0:
                return
            options = dataclasses.replace(options, max_new_tokens=min(options.max_new_tokens, room))
        new_ids: queue.Queue[int | BaseException | None] = queue.Queue()

        class _Streamer:
            first = True

            def put(self, value: Any) -> None:
                if self.first:  # generate() first echoes the prompt
                    self.first = False
                    return
                for idx in value.reshape(-1).tolist():
                    new_ids.put(int(idx))

            def end(self) -> None:
                new_ids.put(None)

        cancel = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        kwargs: dict[str, Any] = {
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
            "input_ids": torch.tensor([ids], device=self._device),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long, device=self._device),
            "cache": cache,
            "max_new_tokens": options.max_new_tokens,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._eos_ids or None,
            "streamer": _Streamer(),
        }
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)

        def run() -> None:
            try:
                if options.seed is not None:
                    torch.manual_seed(options.seed)
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # handed to the consuming thread
                new_ids.put(exc)

        worker = threading.Thread(target=run, name="rt-hf-generate", daemon=True)
        worker.start()
        generated: list[int] = []
        emitted = ""
        try:
            while True:
                item = new_ids.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise BackendError(f"transformers generation failed: {item}") from item
                if item in self._eos_ids:
                    continue
                generated.append(item)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # an incomplete UTF-8 sequence: wait for the next token
                if len(text) > len(emitted):
                    yield text[len(emitted) :]
                    emitted = text
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if len(text) > len(emitted):
                yield text[len(emitted) :]
        finally:  # a consumer that stops early (stop string, closed stream) ends generation too
            cancel.set()
            worker.join()
