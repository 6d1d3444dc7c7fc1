"""A backend over a served engine's OpenAI-compatible `/v1/completions` (vLLM, llama-cpp-python's server).

The engine scales (vLLM: tensor/pipeline parallel, replicas); this backend only asks it for the
numbers a decision needs and for the continuation. The chat template is rendered here, by the same
`encode` the in-process backends use (a tokenizer-only LlamaCppBackend over the GGUF, or an
HFBackend), so message text is tokenized with special tokens off and user text can never become a
decision token on the server either.

Engine semantics (what each engine's logprobs mean, and the requests sent):

``vllm`` (V1 engine, ``vllm serve MODEL --max-logprobs 20``)
    The prompt goes as token ids. Returned logprobs are *raw* by default (``--logprobs-mode
    raw_logprobs``): a log-softmax of the logits before logit bias, temperature and penalties, and
    the top-k is ranked by those raw values, so a decision token outside the top k is simply
    missing. The decision therefore uses *prompt logprobs*: one request with one prompt per
    decision token, ``prompt = ids + [token]``, ``max_tokens=1``, ``prompt_logprobs=k``; the last
    position scores exactly ``log p(token | ids)`` (and lists the top k there), and every prompt
    after the first hits the prefix cache. Not run in this project's tests (no GPU engine here).

``llama-cpp-python`` (``python -m llama_cpp.server --model M.gguf``, extra ``[server]``)
    Its `/v1/completions` takes text only (``prompt: str``) and tokenizes it with special tokens
    on. The text sent is the detokenization of the safe ids, and it is checked locally with the same
    llama.cpp tokenizer (the GGUF's vocabulary) to tokenize back to exactly those ids, and again
    with the server's ``usage.prompt_tokens``; a conversation whose text would tokenize differently
    (a user typing a special-token string) raises InvalidInputError instead of being sent. Its
    completion logprobs come from ``Llama.logits_to_logprobs`` over the raw scores kept by
    ``eval`` (``logit_bias`` works on a copy), i.e. a float32 log-softmax at temperature 1 before
    the bias; CONTROL tokens (the decision tokens) come back as the text ``''``, so the top-k
    cannot name them. The decision uses one request per decision token that forces it
    (``logit_bias={id: 100}``, ``max_tokens=1``, ``temperature=0``, ``logprobs=0``): the sampled
    token's logprob is then the exact raw ``log p(token | ids)``; the engine reuses the cached
    prefix, so each request evaluates one token.

``llama.cpp``'s C++ ``llama-server`` (not supported here yet): ``/completion`` takes token ids and
    ``n_probs``; with ``temperature < 0`` it samples greedily and reports a plain softmax of the
    logits.

From exact raw log-probabilities at temperature 1, temperature 1 and first-step biases are exact
client-side (`FirstTokenDistribution.with_bias`, the arithmetic every backend shares). A temperature
other than 1 needs the whole distribution, which no engine returns: the probabilities are then
estimated from the known values and bounded over how the unknown mass may be spread, and the
distribution is marked ``exact=False`` with ``bounds`` per decision name (the decision carries the
same in ``extras``).

Context: prompts are bounded like the in-process backends bound them (PromptTooLongError, and the
continuation's ``max_tokens`` clipped to the room left), by the smallest of the tokenizer's trained
context (the GGUF's ``<arch>.context_length`` or the HF config's ``max_position_embeddings``),
vLLM's ``max_model_len`` from ``/v1/models`` (read when the backend asks that list, i.e. unless
both `engine` and `model` are given), and the ``max_context`` option. llama-cpp-python's server
does not report its ``--n_ctx``: pass it as ``max_context`` when it is below the trained context.

Errors: connection failures -> BackendUnavailableError, timeouts -> BackendTimeoutError, other
engine errors -> BackendError; connection failures and 502/503/504 are retried a bounded number of
times with exponential backoff (tenacity) before that. A continuation stream that ends with neither
a ``finish_reason`` nor ``[DONE]`` (the engine died or dropped the connection) is a retryable
BackendError, never a normal stop. The router turns each into the tenant's fail mode.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rt_middleware._extras import require
from rt_middleware.backends.base import BaseBackend, GenerationOptions, Prefill, request_deadline
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    RTError,
)
from rt_middleware.messages import Conversation
from rt_middleware.tokens import RefusalTokenSchema

if TYPE_CHECKING:
    import httpx
    from llama_cpp import Llama

__all__ = ["ENGINES", "OpenAICompatibleBackend", "cache_salt_scope", "distribution_from_logprobs", "use_cache_salt"]

Engine = Literal["vllm", "llama-cpp-python"]
ENGINES: tuple[str, ...] = ("vllm", "llama-cpp-python")
_FORCE = 100.0
"""The logit bias that forces a decision token in a probe (llama-cpp-python)."""
_RETRY_STATUS = frozenset({502, 503, 504})
_CACHE_SALT: contextvars.ContextVar[str | None] = contextvars.ContextVar("rt_cache_salt", default=None)


def use_cache_salt(salt: str | None) -> contextvars.Token[str | None]:
    """From now on in this thread / asyncio task (and threads it starts with `asyncio.to_thread`),
    requests to vLLM carry ``cache_salt=salt``: vLLM V1 reuses prefix-cache blocks only between
    requests with the same salt, so one salt per tenant keeps tenants' cached prefixes apart."""
    return _CACHE_SALT.set(salt or None)


@contextlib.contextmanager
def cache_salt_scope(salt: str | None) -> Iterator[None]:
    """`use_cache_salt` for a block."""
    token = use_cache_salt(salt)
    try:
        yield
    finally:
        _CACHE_SALT.reset(token)


# ---- pure helpers: probabilities from log-probabilities -------------------------------------------------
def distribution_from_logprobs(
    decision_logprobs: Mapping[str, float],
    *,
    temperature: float = 1.0,
    logit_bias: Mapping[str, float] | None = None,
    others: Sequence[float] = (),
    cap: float | None = None,
    vocab_size: int | None = None,
    prompt_tokens: int | None = None,
) -> FirstTokenDistribution:
    """The decision distribution from exact raw (temperature-1) log-probabilities of the decision tokens.

    At temperature 1 this is exact. Otherwise ``p_T(j) ∝ p(j)^(1/T)`` needs every token: `others`
    are known raw logprobs of other tokens (a top-k), `cap` the most any single unknown token can
    hold (the smallest top-k value when the top-k is complete, else the unknown mass), `vocab_size`
    the vocabulary size. The unknown mass's contribution is bounded by spreading it evenly and by
    piling it into as few tokens as `cap` allows; the estimate uses the midpoint, `bounds` both ends.
    """
    bias = dict(logit_bias or {})
    if not all(lp <= 1e-6 for lp in (*decision_logprobs.values(), *others)):  # False for NaN too
        raise BackendError(f"the engine returned unusable log-probabilities: {dict(decision_logprobs)}")
    probs = {name: math.exp(lp) for name, lp in decision_logprobs.items()}
    known = sum(probs.values()) + sum(math.exp(lp) for lp in others)
    rest = max(0.0, 1.0 - sum(probs.values()))
    if temperature == 1.0:
        base = FirstTokenDistribution(probabilities=probs, rest=rest, prompt_tokens=prompt_tokens)
        return base.with_bias(bias) if bias else base
    a = 1.0 / temperature
    unknown = max(0.0, 1.0 - known)
    n = max(1, (vocab_size or 1) - len(probs) - len(others))
    top = min(unknown, cap if cap is not None else unknown)
    spread = n * (unknown / n) ** a if unknown > 0 else 0.0
    if top > 0:
        full, remainder = divmod(unknown, top)
        piled = full * top**a + remainder**a
    else:
        piled = 0.0
    low, high = sorted((spread, piled))
    scaled = {name: p**a * math.exp(bias.get(name, 0.0)) for name, p in probs.items()}
    fixed = sum(scaled.values()) + sum(math.exp(lp * a) for lp in others)
    z_mid = fixed + (low + high) / 2
    estimate = {name: v / z_mid for name, v in scaled.items()}
    bounds = {name: (v / (fixed + high), v / (fixed + low)) for name, v in scaled.items()}
    return FirstTokenDistribution(
        probabilities=estimate,
        rest=max(0.0, 1.0 - sum(estimate.values())),
        prompt_tokens=prompt_tokens,
        temperature=temperature,
        logit_bias=bias,
        exact=high - low <= 1e-12 * max(1.0, fixed),
        bounds=bounds,
    )


# ---- the prompt on the wire -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Remote:
    """`Prefill.state`: the prompt ids (and the text llama-cpp-python's server gets for them)."""

    ids: tuple[int, ...]


def _tightest(*limits: int | None) -> int | None:
    """The smallest of the context limits that are known (None: no limit known)."""
    return min((limit for limit in limits if limit is not None), default=None)


def _server_ids(llm: Llama, text: str) -> list[int]:
    """The ids llama-cpp-python's server (0.3.36, `Llama._create_completion`) makes of a text prompt:
    optional BOS/CLS, the text with special tokens on, optional EOS/SEP."""
    model = llm._model
    ids = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    first = model.token_cls() if model.token_cls() != -1 else llm.token_bos()
    if model.add_bos_token() and first != -1:
        ids = [first, *ids]
    sep = model.token_sep()
    if model.add_eos_token() or sep != -1:
        ids.append(sep if sep != -1 else llm.token_eos())
    return ids


class _HFTokenizer:
    """The encoding half of an HFBackend, without the weights: tokenizer + ChatEncoder of an HF dir."""

    def __init__(self, path: Path, schema: RefusalTokenSchema | None) -> None:
        transformers = require("transformers", extra="hf", feature="an HF tokenizer")
        from rt_middleware.backends.hf import resolve_hf_tokens
        from rt_middleware.templating import ChatEncoder

        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a transformers model directory (no config.json)")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        if schema is None:
            specials = [t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special]
            schema = RefusalTokenSchema.detect(specials) or RefusalTokenSchema.coconot()
        self._encoder = ChatEncoder(self.tokenizer)
        self.tokens = resolve_hf_tokens(self.tokenizer, schema, self._encoder)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.max_context = config.get("max_position_embeddings")

    def encode(self, conversation: Conversation) -> list[int]:
        return self._encoder.encode(conversation)


class OpenAICompatibleBackend(BaseBackend):
    """Decisions and continuations from a model served by vLLM or llama-cpp-python's server.

    `base_url` ends in ``/v1``. `model` is the served model id (None: the first of ``/v1/models``).
    `tokenizer` renders the chat template locally: a ``.gguf`` path (vocabulary only is loaded), a
    transformers model directory (tokenizer only, no weights), or a backend you built. It must be the
    served model's tokenizer. (`rt_middleware.load_backend("openai:URL")` passes the shipped default
    model's GGUF when given none or ``"default"``: the backends do not know the default model.) `engine` is one of
    ENGINES or ``"auto"`` (from ``/v1/models``' ``owned_by``); llama-cpp-python needs a GGUF tokenizer.
    `max_context` bounds prompt + continuation in tokens: the engine's context when it is below the
    tokenizer's trained context and the engine does not report it (llama-cpp-python's ``--n_ctx``;
    vLLM's ``max_model_len`` is read from ``/v1/models`` when that list is asked).
    `timeout` bounds each HTTP read; `retries` re-sends after connection failures and 502/503/504,
    waiting `backoff` seconds doubled each time. `transport` replaces httpx's (proxies, TLS, tests).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        schema: RefusalTokenSchema | None = None,
        tokenizer: str | Path | BaseBackend | None = None,
        *,
        engine: Engine | Literal["auto"] = "auto",
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        top_logprobs: int = 20,
        max_context: int | None = None,
        model_name: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        httpx = require("httpx", extra="server", feature="OpenAICompatibleBackend")
        self._tenacity = require("tenacity", extra="server", feature="OpenAICompatibleBackend")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigError("retries and backoff must be >= 0 and timeout > 0")
        if max_context is not None and max_context < 1:
            raise ConfigError(f"max_context must be a positive number of tokens, got {max_context}")
        if engine not in (*ENGINES, "auto"):
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)} or 'auto', got {engine!r}")
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"the engine URL must look like http://HOST:PORT/v1, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._retries, self._backoff, self._top_logprobs = retries, backoff, top_logprobs
        self._read_timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )
        self._vocab_llm: Llama | None = None
        self.encoder = self._load_encoder(tokenizer, schema)
        self.tokens = self.encoder.tokens
        self.vocab_size = self._vocab_size()
        served_context = None
        if engine == "auto" or model is None:
            detected, model, served_context = self._describe_server(model)
            engine = detected if engine == "auto" else engine
        self.max_context = _tightest(max_context, served_context, self._model_context())
        self.engine: Engine = engine  # type: ignore[assignment]
        self.model = model
        if self.engine == "llama-cpp-python" and self._vocab_llm is None:
            raise ConfigError(
                "llama-cpp-python's server takes text prompts only; pass the served GGUF as tokenizer= "
                "so the text can be checked to tokenize back to the safe ids"
            )
        self.model_name = model_name or model or "served-model"

    # ---- set-up ----------------------------------------------------------------------------------
    def _load_encoder(self, tokenizer: str | Path | BaseBackend | None, schema: RefusalTokenSchema | None) -> Any:
        if isinstance(tokenizer, BaseBackend):
            return tokenizer
        if tokenizer is None or str(tokenizer) == "default":
            raise ConfigError(
                "OpenAICompatibleBackend needs tokenizer= (the served model's .gguf, model directory or "
                "a backend); rt_middleware.load_backend('openai:URL') uses the default model's GGUF"
            )
        text = str(tokenizer)
        path = Path(text).expanduser()
        if path.suffix.lower() == ".gguf":
            llama_cpp = require("llama_cpp", extra="llamacpp", feature="a GGUF tokenizer", package="llama-cpp-python")
            from rt_middleware.backends.llamacpp import LlamaCppBackend

            if not path.is_file():
                raise ConfigError(f"tokenizer GGUF not found: {path}")
            try:
                llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(f"cannot read the vocabulary of {path}: {exc}") from exc
            self._vocab_llm = llm
            return LlamaCppBackend(llm, schema=schema)
        if path.is_dir():
            return _HFTokenizer(path, schema)
        raise ConfigError(f"tokenizer {text!r} is neither a .gguf file nor a model directory")

    def _vocab_size(self) -> int | None:
        if self._vocab_llm is not None:
            return int(self._vocab_llm.n_vocab())
        tokenizer = getattr(self.encoder, "tokenizer", None)
        return len(tokenizer) if tokenizer is not None else None

    def _model_context(self) -> int | None:
        """The tokenizer's trained context (a vocabulary-only GGUF's own n_ctx is not the model's)."""
        if self._vocab_llm is not None:
            from rt_middleware.backends.llamacpp import trained_context

            return trained_context(self._vocab_llm)
        return self.encoder.max_context

    def _describe_server(self, model: str | None) -> tuple[Engine, str, int | None]:
        """The engine, the served model id (`model`, else the first listed) and its context if listed."""
        body = self._request("GET", "/models")
        try:
            entries = body["data"]
            served = model if model is not None else str(entries[0]["id"])
            entry = next((e for e in entries if str(e["id"]) == served), entries[0])
            owner = str(entry.get("owned_by", ""))
            listed = entry.get("max_model_len") if str(entry["id"]) == served else None  # vLLM's
            context = int(listed) if listed is not None else None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.base_url}/models lists no usable model: {exc!r}") from exc
        if owner == "vllm":
            return "vllm", served, context
        if owner == "me":  # what llama-cpp-python's server reports
            return "llama-cpp-python", served, context
        raise ConfigError(
            f"cannot tell which engine serves {self.base_url} (owned_by={owner!r}); pass engine= one of {ENGINES}"
        )

    def ping(self) -> None:
        """Raise a BackendError unless the engine answers `/models` (the gateway's /readyz uses it)."""
        self._request("GET", "/models")

    def close(self) -> None:
        self._client.close()

    # ---- HTTP with retries and error mapping ------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import httpx

        try:
            yield
        except RTError:
            raise
        except httpx.ConnectError as exc:
            raise BackendUnavailableError(f"cannot reach the engine at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(f"the engine at {self.base_url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"the connection to {self.base_url} failed: {exc}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"unexpected answer from the engine at {self.base_url}: {exc!r}") from exc

    def _retrying(self) -> Any:
        t = self._tenacity
        return t.Retrying(
            stop=t.stop_after_attempt(self._retries + 1),
            wait=t.wait_exponential(multiplier=self._backoff, max=5.0),
            retry=t.retry_if_exception(lambda exc: isinstance(exc, BackendUnavailableError)),
            reraise=True,
        )

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            detail = response.json().get("error", response.text)
            detail = detail.get("message", detail) if isinstance(detail, dict) else detail
        except (ValueError, AttributeError):
            detail = response.text
        message = f"the engine answered {response.status_code}: {str(detail)[:500]}"
        if response.status_code in _RETRY_STATUS:
            raise BackendUnavailableError(message)
        raise BackendError(message, retryable=response.status_code >= 500)

    def _time_left(self, deadline: float | None, what: str) -> dict[str, float]:
        """httpx timeout keyword for a request under `deadline` (BackendTimeoutError once it passed)."""
        if deadline is None:
            return {}
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendTimeoutError(f"{what} ran past its deadline")
        return {"timeout": min(self._read_timeout, remaining)}

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        deadline = request_deadline()
        for attempt in self._retrying():
            with attempt, self._errors():
                limit = self._time_left(deadline, "the prefill")
                response = self._client.request(method, path, json=payload, **limit)
                self._check(response)
                return response.json()
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- template ----------------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> list[int]:
        return self.encoder.encode(conversation)

    def _prompt_text(self, ids: Sequence[int]) -> str:
        """The text whose server-side tokenization is exactly `ids` (llama-cpp-python), or an error."""
        from rt_middleware.backends.llamacpp import token_bytes

        llm = self._vocab_llm
        assert llm is not None
        raw = b"".join(token_bytes(llm, t, special=True) for t in ids)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or _server_ids(llm, text) != list(ids):
            raise InvalidInputError(
                "llama-cpp-python's server takes prompt text and reads special-token strings in it as "
                "control tokens; this conversation's text would not tokenize to the safe ids there "
                "(does a message contain a special-token string?). Serve the model with an engine "
                "that takes token ids (vLLM) to accept it."
            )
        return text

    def _salt(self) -> dict[str, str]:
        salt = _CACHE_SALT.get()
        return {"cache_salt": salt} if salt and self.engine == "vllm" else {}

    def _prompt(self, ids: Sequence[int]) -> str | list[int]:
        return self._prompt_text(ids) if self.engine == "llama-cpp-python" else list(ids)

    # ---- the decision --------------------------------------------------------------------------------
    def _decision_logprobs(self, ids: list[int]) -> tuple[dict[str, float], list[float], float | None]:
        """Exact raw logprobs of each decision token after `ids`, other known logprobs, and a cap."""
        if self.engine == "llama-cpp-python":
            return self._forced_logprobs(ids), [], None
        return self._prompt_logprobs(ids)

    def _forced_logprobs(self, ids: list[int]) -> dict[str, float]:
        text = self._prompt_text(ids)
        out: dict[str, float] = {}
        for name, token_id in self.tokens.ids.items():
            body = self._request("POST", "/completions", {
                "model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0,
                "logprobs": 0, "logit_bias": {str(token_id): _FORCE},
            })
            with self._errors():
                usage = body.get("usage") or {}
                if usage.get("prompt_tokens", len(ids)) != len(ids):
                    raise BackendError(
                        f"the engine read {usage['prompt_tokens']} prompt tokens, not {len(ids)}: its "
                        "tokenizer differs from tokenizer= (serve the same GGUF)"
                    )
                out[name] = float(body["choices"][0]["logprobs"]["token_logprobs"][0])
        return out

    def _prompt_logprobs(self, ids: list[int]) -> tuple[dict[str, float], list[float], float | None]:
        names = list(self.tokens.ids)
        body = self._request("POST", "/completions", {
            "model": self.model,
            "prompt": [[*ids, self.tokens.ids[name]] for name in names],
            "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": self._top_logprobs, **self._salt(),
        })
        with self._errors():
            choices = sorted(body["choices"], key=lambda c: c["index"])
            out: dict[str, float] = {}
            top: dict[int, float] = {}
            for name, choice in zip(names, choices, strict=True):
                last = choice["prompt_logprobs"][len(ids)]
                entries = {_token_id(k): _logprob(v) for k, v in last.items()}
                out[name] = entries[self.tokens.ids[name]]
                top.update(entries)
        decision_ids = set(self.tokens.ids.values())
        others = [lp for idx, lp in top.items() if idx not in decision_ids]
        ranked = sorted(top.values(), reverse=True)[: self._top_logprobs]
        cap = math.exp(ranked[-1]) if len(ranked) >= self._top_logprobs else None
        return out, others, cap

    def _distribution(self, ids: list[int], temperature: float, bias: Mapping[str, float]) -> FirstTokenDistribution:
        decision, others, cap = self._decision_logprobs(ids)
        return distribution_from_logprobs(
            decision, temperature=temperature, logit_bias=bias, others=others, cap=cap,
            vocab_size=self.vocab_size, prompt_tokens=len(ids),
        )

    def _prefill_ids(self, ids: list[int], temperature: float, logit_bias: Mapping[str, float]) -> Prefill:
        distribution = self._distribution(ids, temperature, logit_bias)
        return Prefill(distribution=distribution, input_ids=list(ids), state=_Remote(tuple(ids)))

    def _distributions_ids(
        self, batch: list[list[int]], temperature: float, logit_bias: Mapping[str, float]
    ) -> list[FirstTokenDistribution]:
        return [self._distribution(ids, temperature, logit_bias) for ids in batch]

    # ---- the continuation ----------------------------------------------------------------------------
    def _sampling(self, options: GenerationOptions, room: int) -> dict[str, Any]:
        """Plain sampling (no top-k, min-p or penalties), as the in-process backends sample."""
        params: dict[str, Any] = {
            "max_tokens": max(1, min(options.max_new_tokens, room)),
            "temperature": options.temperature,
            "top_p": options.top_p,
            "stream": True,
        }
        if options.stop:
            params["stop"] = list(options.stop)
        if options.seed is not None:
            params["seed"] = options.seed
        if self.engine == "llama-cpp-python":
            params.update(top_k=0, min_p=0.0, repeat_penalty=1.0)
        else:
            params.update(top_k=-1, min_p=0.0, repetition_penalty=1.0)
        return params

    def _stream_ids(self, prefill: Prefill, token_id: int, options: GenerationOptions) -> Iterator[str]:
        state = prefill.take_state()
        if not isinstance(state, _Remote):
            raise ConfigError("this Prefill was not made by this OpenAICompatibleBackend")
        ids = [*state.ids, token_id]
        room = (self.max_context or 1 << 30) - len(ids)
        if room < 1:
            return "context"
        params = self._sampling(options, room)
        payload = {"model": self.model, "prompt": self._prompt(ids), **params, **self._salt()}
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        response = self._open_stream(payload, deadline)
        finish = None
        done = False
        try:
            with self._errors():
                for line in response.iter_lines():
                    self._time_left(deadline, "the continuation")
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise BackendError(f"the engine failed while streaming: {chunk['error']}")
                    for choice in chunk.get("choices", ()):
                        if choice.get("text"):
                            yield choice["text"]
                        finish = choice.get("finish_reason") or finish
        finally:
            response.close()
        if finish is None and not done:
            raise BackendError(
                f"the engine's stream ended early (no finish_reason and no [DONE] from {self.base_url})",
                retryable=True,
            )
        if finish == "length":
            return "context" if params["max_tokens"] < options.max_new_tokens else "length"
        return "stop"

    def _open_stream(self, payload: dict[str, Any], deadline: float | None) -> httpx.Response:
        """Open an SSE response; only opening is retried (a retry after text was sent would repeat it)."""
        for attempt in self._retrying():
            with attempt, self._errors():
                limit = self._time_left(deadline, "the continuation")
                request = self._client.build_request("POST", "/completions", json=payload, **limit)
                response = self._client.send(request, stream=True)
                if response.status_code >= 400:
                    response.read()
                    response.close()
                    self._check(response)
                return response
        raise AssertionError("unreachable")  # pragma: no cover


def _token_id(key: str) -> int:
    """vLLM keys prompt logprobs by token id ('123', or 'token_id:123' with return_tokens_as_token_ids)."""
    return int(str(key).rsplit(":", 1)[-1])


def _logprob(value: Any) -> float:
    return float(value["logprob"] if isinstance(value, Mapping) else value)
