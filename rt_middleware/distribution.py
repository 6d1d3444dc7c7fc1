"""The first-token distribution: how likely the model is to open with each decision token."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from rt_middleware.errors import BackendError, ConfigError
from rt_middleware.tokens import RESPOND, ResolvedTokens

__all__ = [
    "FirstTokenDistribution",
    "apply_first_step_bias",
    "check_bias_names",
    "check_sampling",
    "distribution_from_logits",
]


def check_bias_names(names: Sequence[str], bias: Mapping[str, float]) -> None:
    """A bias may only name decision tokens (`names`)."""
    unknown = set(bias) - set(names)
    if unknown:
        raise ConfigError(f"logit_bias names unknown decision tokens: {sorted(unknown)}")


def apply_first_step_bias(
    names: Sequence[str], probs: np.ndarray, rest: np.ndarray, bias: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities after adding `bias` to some decision tokens' logits: the one implementation.

    `probs[..., j]` is p(names[j]) over the full vocabulary and `rest` the mass of every other
    token (one row, or a table of rows). Exact without the logits: a bias b_j scales p_j by e^b_j
    and the partition function by (rest + sum of the scaled decision probabilities).
    """
    check_bias_names(names, bias)
    factors = np.array([math.exp(bias.get(name, 0.0)) for name in names], dtype=np.float64)
    scaled = np.asarray(probs, dtype=np.float64) * factors
    z = np.asarray(rest, dtype=np.float64) + scaled.sum(axis=-1)
    return scaled / z[..., None], rest / z


@dataclass(frozen=True)
class FirstTokenDistribution:
    """Full-vocabulary softmax probabilities of the decision tokens at the first step.

    `probabilities` is keyed like policies (``respond`` and category names); `rest` is the mass of
    every other token. Temperature and first-step logit biases are already applied.
    """

    probabilities: Mapping[str, float]
    rest: float = 0.0
    prompt_tokens: int | None = None
    temperature: float = 1.0
    logit_bias: Mapping[str, float] = field(default_factory=dict)
    exact: bool = True
    """False when a served engine returned too little to compute the softmax exactly (see
    `rt_middleware.backends.openai_compat`): `probabilities` are then estimates within `bounds`."""
    bounds: Mapping[str, tuple[float, float]] | None = None
    """Decision name -> (lowest, highest) probability consistent with what the engine returned."""

    def __post_init__(self) -> None:
        if not all(math.isfinite(p) and p >= 0 for p in (*self.probabilities.values(), self.rest)):
            raise ValueError(f"probabilities must be finite and >= 0, got {dict(self.probabilities)}, rest {self.rest}")
        object.__setattr__(self, "probabilities", MappingProxyType(dict(self.probabilities)))
        object.__setattr__(self, "logit_bias", MappingProxyType(dict(self.logit_bias)))
        if self.bounds is not None:
            object.__setattr__(self, "bounds", MappingProxyType({k: tuple(v) for k, v in self.bounds.items()}))

    @property
    def respond(self) -> float:
        return self.probabilities[RESPOND]

    @property
    def categories(self) -> dict[str, float]:
        return {k: v for k, v in self.probabilities.items() if k != RESPOND}

    @property
    def control_mass(self) -> float:
        """Total probability of all decision tokens."""
        return float(sum(self.probabilities.values()))

    def argmax(self) -> str:
        """The decision name the model itself would emit among the decision tokens."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def renormalized(self, names: list[str] | None = None) -> dict[str, float]:
        """Probabilities renormalised over `names` (default: every decision token)."""
        names = list(self.probabilities) if names is None else names
        total = sum(self.probabilities[n] for n in names)
        if total <= 0:
            return {n: 1.0 / len(names) for n in names}
        return {n: self.probabilities[n] / total for n in names}

    def with_bias(self, bias: Mapping[str, float]) -> FirstTokenDistribution:
        """The distribution after adding `bias` to some decision tokens' logits (`apply_first_step_bias`)."""
        names = list(self.probabilities)
        probs, rest = apply_first_step_bias(
            names, np.array([self.probabilities[n] for n in names]), np.float64(self.rest), bias
        )
        merged = dict(self.logit_bias)
        for k, b in bias.items():
            merged[k] = merged.get(k, 0.0) + b
        return FirstTokenDistribution(
            probabilities={n: float(p) for n, p in zip(names, probs, strict=True)},
            rest=float(rest),
            prompt_tokens=self.prompt_tokens,
            temperature=self.temperature,
            logit_bias=merged,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "probabilities": dict(self.probabilities),
            "rest": self.rest,
            "prompt_tokens": self.prompt_tokens,
            "temperature": self.temperature,
            "logit_bias": dict(self.logit_bias),
            **({} if self.exact else {"exact": False}),
            **({"bounds": {k: list(v) for k, v in self.bounds.items()}} if self.bounds else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FirstTokenDistribution:
        return cls(
            probabilities=data["probabilities"],
            rest=data.get("rest", 0.0),
            prompt_tokens=data.get("prompt_tokens"),
            temperature=data.get("temperature", 1.0),
            logit_bias=data.get("logit_bias", {}),
            exact=data.get("exact", True),
            bounds=data.get("bounds"),
        )


def check_sampling(tokens: ResolvedTokens, temperature: float, logit_bias: Mapping[str, float]) -> None:
    """Reject a temperature or a bias key that no backend could honour."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be a positive finite number, got {temperature!r}")
    for name, value in logit_bias.items():
        tokens.schema.token_for(name)
        if not math.isfinite(value):
            raise ConfigError(f"logit_bias[{name!r}] must be finite, got {value!r}")


def distribution_from_logits(
    logits: Any,
    tokens: ResolvedTokens,
    *,
    temperature: float = 1.0,
    logit_bias: Mapping[str, float] | None = None,
    prompt_tokens: int | None = None,
) -> FirstTokenDistribution:
    """Softmax over the full vocabulary of ``logits / temperature``, then `bias` applied by
    `apply_first_step_bias` (equal to a softmax of ``logits / temperature + bias``).

    `logits` is one row of raw next-token logits (numpy or anything ``np.asarray`` takes). Every
    backend funnels through here, so all agree on the arithmetic (float64, max-shifted); `rest`
    is summed over the other tokens, so re-biasing it later stays exact.
    """
    bias = dict(logit_bias or {})
    check_sampling(tokens, temperature, bias)
    row = np.asarray(logits, dtype=np.float64).reshape(-1) / temperature
    names = list(tokens.ids)
    ids = np.array([tokens.ids[name] for name in names], dtype=np.intp)
    # NaN anywhere (or +inf) poisons the softmax's max and sum: every probability would be NaN, and
    # NaN >= threshold is False, so every category would stay silent and the request be answered
    if np.isnan(row).any() or np.isposinf(row).any() or not np.all(np.isfinite(row[ids])):
        raise BackendError(
            "the model produced unusable logits (NaN or +inf in the vocabulary, or a non-finite "
            "decision-token logit): an overflow in its dtype, or broken weights"
        )
    weights = np.exp(row - np.max(row))
    decision = weights[ids]
    weights[ids] = 0.0
    other = float(weights.sum())  # summed, not 1 - sum(decision): that rounds to 0 when confident
    total = other + float(decision.sum())
    probs, rest = apply_first_step_bias(names, decision / total, np.float64(other / total), bias)
    return FirstTokenDistribution(
        probabilities={name: float(p) for name, p in zip(names, probs, strict=True)},
        rest=float(rest),
        prompt_tokens=prompt_tokens,
        temperature=temperature,
        logit_bias=bias,
    )
