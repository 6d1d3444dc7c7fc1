from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware import ConfigError, FirstTokenDistribution, RefusalTokenSchema
from rt_middleware.distribution import distribution_from_logits
from rt_middleware.errors import BackendError

SCHEMA = RefusalTokenSchema.coconot()
TOKENS = SCHEMA.resolve(lambda t: [100 + SCHEMA.tokens.index(t)])


def reference(row: np.ndarray, temperature: float, bias: dict[str, float]) -> dict[str, float]:
    z = row.astype(np.float64) / temperature
    for name, b in bias.items():
        z[TOKENS.ids[name]] += b
    p = np.exp(z - z.max())
    p /= p.sum()
    return {name: float(p[i]) for name, i in TOKENS.ids.items()}


logit_rows = st.lists(st.floats(-20, 20), min_size=120, max_size=120).map(np.array)
biases = st.dictionaries(st.sampled_from(SCHEMA.names), st.floats(-10, 10), max_size=3)


@settings(max_examples=60, deadline=None)
@given(row=logit_rows, temperature=st.floats(0.2, 3.0), bias=biases)
def test_matches_full_vocabulary_softmax(row: np.ndarray, temperature: float, bias: dict[str, float]) -> None:
    dist = distribution_from_logits(row, TOKENS, temperature=temperature, logit_bias=bias)
    want = reference(row, temperature, bias)
    for name, p in want.items():
        assert dist.probabilities[name] == pytest.approx(p, abs=1e-12)
    assert dist.rest + dist.control_mass == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(row=logit_rows, name=st.sampled_from(SCHEMA.names), b=st.floats(0.01, 10))
def test_positive_bias_never_lowers_its_tokens_probability(row: np.ndarray, name: str, b: float) -> None:
    base = distribution_from_logits(row, TOKENS)
    biased = distribution_from_logits(row, TOKENS, logit_bias={name: b})
    assert biased.probabilities[name] >= base.probabilities[name] - 1e-15


@settings(max_examples=60, deadline=None)
@given(row=logit_rows, bias=biases)
def test_with_bias_equals_biasing_the_logits(row: np.ndarray, bias: dict[str, float]) -> None:
    rebiased = distribution_from_logits(row, TOKENS).with_bias(bias)
    direct = distribution_from_logits(row, TOKENS, logit_bias=bias)
    for name in SCHEMA.names:
        assert rebiased.probabilities[name] == pytest.approx(direct.probabilities[name], rel=1e-9, abs=1e-15)



def test_rebiasing_a_confident_distribution_stays_exact() -> None:
    """When the decision tokens hold all but ~1e-17 of the mass, `rest` must not be 1 - sum (which
    rounds to 0): a large negative bias hands that mass back to the other tokens."""
    row = np.zeros(120)
    row[TOKENS.ids["respond"]] = 45.0
    bias = {"respond": -60.0}
    rebiased = distribution_from_logits(row, TOKENS).with_bias(bias)
    want = reference(row, 1.0, bias)
    for name, p in want.items():
        assert rebiased.probabilities[name] == pytest.approx(p, rel=1e-9)
    assert rebiased.rest == pytest.approx(1.0 - sum(want.values()), rel=1e-9)


def test_one_bias_implementation_for_rows_and_tables() -> None:
    from rt_middleware.distribution import apply_first_step_bias

    probs = np.array([[0.5, 0.2], [0.1, 0.1]])
    rest = np.array([0.3, 0.8])
    one, one_rest = apply_first_step_bias(["a", "b"], probs[0], rest[0], {"a": math.log(2.0)})
    many, many_rest = apply_first_step_bias(["a", "b"], probs, rest, {"a": math.log(2.0)})
    assert np.allclose(one, [1.0 / 1.5, 0.2 / 1.5]) and one_rest == pytest.approx(0.3 / 1.5)
    assert np.array_equal(many[0], one) and many_rest[0] == one_rest
    with pytest.raises(ConfigError, match="unknown decision tokens"):
        apply_first_step_bias(["a", "b"], probs, rest, {"c": 1.0})

def test_renormalized_argmax_and_roundtrip() -> None:
    dist = FirstTokenDistribution(probabilities={"respond": 0.2, "refuse": 0.6}, rest=0.2)
    assert dist.argmax() == "refuse"
    assert dist.renormalized() == pytest.approx({"respond": 0.25, "refuse": 0.75})
    assert FirstTokenDistribution.from_dict(dist.to_dict()) == dist


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature(temperature: float) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        distribution_from_logits(np.zeros(120), TOKENS, temperature=temperature)


def test_bad_bias_key_and_value() -> None:
    with pytest.raises(ConfigError, match="unknown decision name"):
        distribution_from_logits(np.zeros(120), TOKENS, logit_bias={"nope": 1.0})
    with pytest.raises(ConfigError, match="finite"):
        distribution_from_logits(np.zeros(120), TOKENS, logit_bias={"respond": math.inf})
    with pytest.raises(ConfigError, match="unknown decision tokens"):
        FirstTokenDistribution(probabilities={"respond": 1.0}).with_bias({"x": 1.0})


@pytest.mark.parametrize(("where", "value"), [(5, math.nan), (5, math.inf), (TOKENS.ids["respond"], math.nan),
                                              (TOKENS.ids["respond"], -math.inf)])
def test_unusable_logits_are_a_backend_error_not_nan_probabilities(where: int, value: float) -> None:
    """One NaN on an ordinary token made every probability NaN, and NaN >= threshold never fires:
    the request was answered whatever the policy said. Now the backend fails, so the fail mode decides."""
    row = np.zeros(120)
    row[where] = value
    with pytest.raises(BackendError, match="unusable logits"):
        distribution_from_logits(row, TOKENS)


def test_masked_tokens_at_minus_infinity_are_fine() -> None:
    row = np.zeros(120)
    row[:50] = -math.inf  # a model that masks part of its vocabulary
    assert sum(distribution_from_logits(row, TOKENS).probabilities.values()) == pytest.approx(6 / 70)


def test_a_distribution_cannot_hold_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        FirstTokenDistribution(probabilities={"respond": math.nan, "refuse": 0.5})
    from rt_middleware.backends.openai_compat import distribution_from_logprobs

    with pytest.raises(BackendError, match="unusable log-probabilities"):
        distribution_from_logprobs({"respond": math.nan, "refuse": -1.0})


@pytest.mark.parametrize("bad", [{"temperature": math.nan}, {"temperature": math.inf}, {"max_new_tokens": 2.5},
                                 {"max_new_tokens": True}, {"max_new_tokens": 0}, {"top_p": math.nan}])
def test_generation_options_reject_what_no_backend_can_honour(bad: dict) -> None:
    from rt_middleware.backends import GenerationOptions

    with pytest.raises(ValueError, match="must be"):
        GenerationOptions(**bad)
    assert GenerationOptions(max_new_tokens=np.int64(4)).max_new_tokens == 4
