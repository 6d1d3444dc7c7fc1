"""Pure arithmetic of OpenAICompatibleBackend: probabilities from engine log-probabilities (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from rt_middleware.backends.openai_compat import _token_id, distribution_from_logprobs
from rt_middleware.distribution import distribution_from_logits
from rt_middleware.tokens import RefusalTokenSchema

SCHEMA = RefusalTokenSchema.coconot()
VOCAB = 300
DECISION_IDS = list(range(VOCAB - len(SCHEMA.names), VOCAB))


def _tokens():
    return SCHEMA.resolve(lambda token: [DECISION_IDS[SCHEMA.tokens.index(token)]])


def _logprobs(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    return z - np.log(np.exp(z).sum())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bias", [{}, {"respond": -1.5, "Humanizing requests": 2.0}])
def test_temperature_one_is_exact_and_matches_the_in_process_arithmetic(seed: int, bias: dict) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=VOCAB) * 3
    tokens = _tokens()
    lp = _logprobs(logits)
    got = distribution_from_logprobs({n: float(lp[i]) for n, i in tokens.ids.items()}, logit_bias=bias)
    want = distribution_from_logits(logits, tokens, logit_bias=bias)
    assert got.exact and got.bounds is None
    for name in tokens.ids:
        assert got.probabilities[name] == pytest.approx(want.probabilities[name], rel=1e-9, abs=1e-12)
    assert got.rest == pytest.approx(want.rest, abs=1e-9)


@pytest.mark.parametrize("temperature", [0.5, 0.8, 1.5, 3.0])
@pytest.mark.parametrize("known", [0, 20])
def test_other_temperatures_are_marked_inexact_and_bounded(temperature: float, known: int) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=VOCAB) * 2
    tokens = _tokens()
    lp = _logprobs(logits)
    others_ids = [i for i in np.argsort(-lp) if i not in DECISION_IDS][:known]
    others = [float(lp[i]) for i in others_ids]
    # a complete top-k by id bounds every unknown token by its smallest value
    cap = float(np.exp(min(others))) if others else None
    got = distribution_from_logprobs(
        {n: float(lp[i]) for n, i in tokens.ids.items()}, temperature=temperature, others=others,
        cap=cap, vocab_size=VOCAB,
    )
    truth = distribution_from_logits(logits, tokens, temperature=temperature)
    assert not got.exact and got.bounds is not None
    for name in tokens.ids:
        low, high = got.bounds[name]
        assert low - 1e-12 <= truth.probabilities[name] <= high + 1e-12
        assert low <= got.probabilities[name] <= high
    assert got.to_dict()["exact"] is False


def test_vllm_token_keys() -> None:
    assert _token_id("123") == 123
    assert _token_id("token_id:45") == 45


def test_missing_server_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend
    from rt_middleware.errors import MissingExtraError

    monkeypatch.setitem(__import__("sys").modules, "tenacity", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'rt-middleware\[server\]'"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", tokenizer="x.gguf", engine="vllm")


@pytest.mark.parametrize("url", ["", "localhost:8000/v1", "ftp://host/v1", "http://"])
def test_a_malformed_engine_url_is_a_config_error_not_an_unreachable_engine(url: str) -> None:
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend
    from rt_middleware.errors import ConfigError

    with pytest.raises(ConfigError, match="http://HOST:PORT/v1"):
        OpenAICompatibleBackend(url, tokenizer="unused", engine="vllm", model="m")


@pytest.mark.parametrize("max_context", [0, -5])
def test_a_context_that_is_not_positive_is_a_config_error(max_context: int) -> None:
    from rt_middleware.backends.openai_compat import OpenAICompatibleBackend
    from rt_middleware.errors import ConfigError

    with pytest.raises(ConfigError, match="max_context must be a positive number of tokens"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", tokenizer="unused", engine="vllm", model="m",
                                max_context=max_context)
