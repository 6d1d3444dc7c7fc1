"""A JSONL cache of first-token distributions so sweeps and calibrations never rerun the model.

Each line is ``{"key", "model", "temperature", "distribution"}``; the key hashes the model identity,
the prompt and the temperature (prompts themselves are not stored). Distributions are cached
without logit bias: `FirstTokenDistribution.with_bias` re-applies any bias exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from rt_middleware.backends.base import BaseBackend
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import ConfigError
from rt_middleware.messages import as_conversation
from rt_middleware.paths import cache_root

logger = logging.getLogger(__name__)

__all__ = [
    "DistributionCache",
    "cached_distributions",
    "default_cache_path",
    "fits_context",
    "model_identity",
]

_PROBE = "Identity probe: what is the capital of France?"


def default_cache_path() -> Path:
    """``first_token_distributions.jsonl`` under `rt_middleware.paths.cache_root`."""
    return cache_root() / "first_token_distributions.jsonl"


def model_identity(backend: BaseBackend) -> str:
    """Name, decision tokens and a fingerprint of the weights: one probe prefill's probabilities.

    Names alone do not change when a model is retrained in place; the probe's distribution does,
    so a stale cache can never answer for new weights.
    """
    probe = backend.first_token_distribution(_PROBE)
    blob = json.dumps(
        {
            "model": backend.model_name,
            "tokens": dict(zip(backend.schema.names, backend.schema.tokens, strict=True)),
            "probe": {k: round(v, 9) for k, v in probe.probabilities.items()},
        },
        sort_keys=True,
    )
    return f"{backend.model_name}@{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def fits_context(backend: BaseBackend, prompts: Sequence[str]) -> list[bool]:
    """Whether each prompt plus the decision token fits the model's context (no forward pass)."""
    if backend.max_context is None:
        return [True] * len(prompts)
    return [len(backend.encode(as_conversation(p))) + 1 <= backend.max_context for p in prompts]


def _key(model: str, prompt: str, temperature: float) -> str:
    blob = json.dumps([model, prompt, float(temperature)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class DistributionCache:
    """Distributions by (model identity, prompt, temperature), appended to a JSONL file as they come."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, FirstTokenDistribution] = {}
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        complete, _, tail = raw.rpartition(b"\n")
        if tail.strip():  # a writer killed mid-line: drop that line so later appends start clean
            try:
                json.loads(tail)
            except ValueError:
                logger.warning("%s: dropping a cut-off last line (an interrupted run); the lines before it are kept", path)
                with path.open("r+b") as fh:
                    fh.truncate(len(complete) + 1 if complete else 0)
            else:  # whole, only its newline missing: add it, or the next append would join the line
                with path.open("ab") as fh:
                    fh.write(b"\n")
                complete = raw
        for line_no, text in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                self._add(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                raise ConfigError(
                    f"{path}:{line_no}: corrupt distribution cache line ({exc}); delete the file "
                    "or pass another --cache"
                ) from None

    def _add(self, record: dict) -> None:
        self._entries[record["key"]] = FirstTokenDistribution.from_dict(record["distribution"])

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, model: str, prompt: str, temperature: float) -> FirstTokenDistribution | None:
        return self._entries.get(_key(model, prompt, temperature))

    def put_many(
        self, model: str, temperature: float, items: Sequence[tuple[str, FirstTokenDistribution]]
    ) -> None:
        lines = []
        for prompt, dist in items:
            if dist.logit_bias:
                raise ConfigError("cache only unbiased distributions; re-bias them with with_bias()")
            key = _key(model, prompt, temperature)
            self._entries[key] = dist
            record = {"key": key, "model": model, "temperature": temperature, "distribution": dist.to_dict()}
            lines.append(json.dumps(record) + "\n")
        if self.path is not None and lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(lines)


def cached_distributions(
    backend: BaseBackend,
    prompts: Sequence[str],
    *,
    temperature: float = 1.0,
    cache: DistributionCache | None = None,
    model: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[FirstTokenDistribution]:
    """Unbiased distributions of `prompts`, running the model only on cache misses (in batches).

    Each finished batch is appended to the cache file at once, so an interrupted run keeps its work.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    cache = DistributionCache(None) if cache is None else cache
    model = model or model_identity(backend)
    found = {p: cache.get(model, p, temperature) for p in dict.fromkeys(prompts)}
    missing = [p for p, dist in found.items() if dist is None]
    starts = range(0, len(missing), batch_size)
    if progress and missing:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="first-token distributions", unit="batch")
    for start in starts:
        batch = missing[start : start + batch_size]
        dists = backend.first_token_distributions(batch, temperature=temperature, batch_size=len(batch))
        cache.put_many(model, temperature, list(zip(batch, dists, strict=True)))
        found.update(zip(batch, dists, strict=True))
    return [found[p] for p in prompts]  # type: ignore[misc]
